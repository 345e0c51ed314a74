"""Sampling images at arbitrary points: crop_resize, resample, affine (x: [B, C, H, W]).

resample (iOS15+) reads ``coordinates[b, h, w] = (x, y)`` (width first):
- coordinates_mode: unnormalized (pixels), normalized_minus_one_to_one, normalized_zero_to_one;
  normalised coordinates span the corner pixels' centres with align_corners, their outer edges
  without (x_pix = (x+1)/2*(W-1), or ((x+1)*W - 1)/2);
- padding_mode outside the image: constant (padding_value), border (clamp), reflection (mirror
  about the edge pixels' centres, |1 2 3| -> 2 3 2 1 2 3 2 1), symmetric (about their outer edges,
  |1 2 3| -> 3 2 1 1 2 3 3 2 1), applied to the coordinate before interpolation;
- sampling_mode bilinear, or nearest (round half to even, as coremltools' expected values need).
affine maps the output grid (normalised [-1, 1], corners aligned) through [a0 a1 a2; b0 b1 b2]
and resamples bilinearly with zero padding. crop_resize samples each box on the resize_bilinear
grid of its sampling mode (applied to the box's own extent), bilinearly; points outside the image
take pad_value (0 before iOS16), as tf.image.crop_and_resize's extrapolation_value.
"""
import numpy as np

from ..registry import kernel
from ._util import F32, f32, flag, ints
from .image import grid


def _reflect(p, n, about_edges):
    if n == 1:
        return np.zeros_like(p)
    if about_edges:  # symmetric: period 2n, mirrors at -0.5 and n-0.5
        t = np.mod(p + 0.5, 2 * n)
        return np.where(t >= n, 2 * n - t, t) - 0.5
    t = np.mod(p, 2 * (n - 1))  # reflection: period 2(n-1), mirrors at 0 and n-1
    return np.where(t > n - 1, 2 * (n - 1) - t, t)


def _fold(p, n, padding):
    if padding == "border":
        return np.clip(p, 0, n - 1)
    if padding in ("reflection", "symmetric"):
        return np.clip(_reflect(p, n, padding == "symmetric"), 0, n - 1)
    return p  # constant: out-of-image reads are replaced by the padding value


def _read(img, hh, ww, pad_value):
    """img[:, hh, ww] with the pad value where (hh, ww) falls outside the image."""
    c, h, w = img.shape
    inside = (hh >= 0) & (hh < h) & (ww >= 0) & (ww < w)
    vals = img[:, np.clip(hh, 0, h - 1), np.clip(ww, 0, w - 1)]
    return np.where(inside, vals, F32(pad_value))


def sample(img, hs, ws, bilinear=True, padding="constant", pad_value=0.0):
    """Values of img [C, H, W] at pixel coordinates (hs, ws) (arrays of one shape) -> [C, *shape]."""
    _, h, w = img.shape
    hs, ws = _fold(hs, h, padding), _fold(ws, w, padding)
    if not bilinear:
        return _read(img, np.rint(hs).astype(np.int64), np.rint(ws).astype(np.int64), pad_value)
    h0, w0 = np.floor(hs).astype(np.int64), np.floor(ws).astype(np.int64)
    th, tw = (hs - h0).astype(F32), (ws - w0).astype(F32)
    top = _read(img, h0, w0, pad_value) * (1 - tw) + _read(img, h0, w0 + 1, pad_value) * tw
    bottom = _read(img, h0 + 1, w0, pad_value) * (1 - tw) + _read(img, h0 + 1, w0 + 1, pad_value) * tw
    return top * (1 - th) + bottom * th


def _to_pixels(v, n, mode, align):
    v = v.astype(np.float64)
    if mode == "unnormalized":
        return v
    if mode == "normalized_minus_one_to_one":
        return (v + 1) / 2 * (n - 1) if align else ((v + 1) * n - 1) / 2
    if mode == "normalized_zero_to_one":
        return v * (n - 1) if align else v * n - 0.5
    raise ValueError(f"unknown coordinates_mode {mode!r}")


@kernel("resample")
def resample(a, op):
    x, coords = f32(a["x"]), np.asarray(a["coordinates"])
    mode, align = a["coordinates_mode"], flag(a, "align_corners")
    bilinear = a["sampling_mode"] == "bilinear"
    _, _, h, w = x.shape
    out = [sample(x[b], _to_pixels(coords[b, ..., 1], h, mode, align), _to_pixels(coords[b, ..., 0], w, mode, align),
                  bilinear, a["padding_mode"], a.get("padding_value", 0.0)) for b in range(x.shape[0])]
    return np.stack(out)


@kernel("affine")
def affine(a, op):
    x, m = f32(a["x"]), f32(a["transform_matrix"]).reshape(-1, 6)
    h_out, w_out = int(a["output_height"]), int(a["output_width"])
    yn, xn = np.meshgrid(np.linspace(-1, 1, h_out), np.linspace(-1, 1, w_out), indexing="ij")
    _, _, h, w = x.shape
    out = []
    for b in range(x.shape[0]):
        a0, a1, a2, b0, b1, b2 = m[b if m.shape[0] > 1 else 0].astype(np.float64)
        xs, ys = a0 * xn + a1 * yn + a2, b0 * xn + b1 * yn + b2
        out.append(sample(x[b], (ys + 1) / 2 * (h - 1), (xs + 1) / 2 * (w - 1), True, "constant",
                          a.get("padding_value", 0.0)))
    return np.stack(out)


def _box(coords, mode):
    """(h_start, w_start, h_end, w_end) of a box in the given coordinate convention."""
    c0, c1, c2, c3 = coords
    if mode == "CORNERS_HEIGHT_FIRST":
        return c0, c1, c2, c3
    if mode == "CORNERS_WIDTH_FIRST":
        return c1, c0, c3, c2
    if mode == "CENTER_SIZE_HEIGHT_FIRST":
        return c0 - c2 / 2, c1 - c3 / 2, c0 + c2 / 2, c1 + c3 / 2
    if mode == "CENTER_SIZE_WIDTH_FIRST":
        return c1 - c3 / 2, c0 - c2 / 2, c1 + c3 / 2, c0 + c2 / 2
    raise ValueError(f"unknown box_coordinate_mode {mode!r}")


def _box_points(start, end, n, mode):
    """The resize grid of ``mode`` laid over [start, end] (end < start runs backwards)."""
    extent = end - start
    unit = grid(mode, abs(extent) + 1, n) if abs(extent) > 0 else np.zeros(n)
    return start + np.sign(extent) * unit if extent else np.full(n, float(start))


def _crop_one(img, coords, a):
    _, h, w = img.shape
    hs, ws, he, we = (float(v) for v in _box(coords, a.get("box_coordinate_mode", "CORNERS_HEIGHT_FIRST")))
    scale = float(a.get("spatial_scale", 1.0))
    if flag(a, "normalized_coordinates"):
        hs, he, ws, we = hs * (h - 1), he * (h - 1), ws * (w - 1), we * (w - 1)
    hs, ws, he, we = hs * scale, ws * scale, he * scale, we * scale
    mode = a.get("sampling_mode", "DEFAULT")
    rows = _box_points(hs, he, int(a.get("target_height", 1)), mode)
    cols = _box_points(ws, we, int(a.get("target_width", 1)), mode)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    out = sample(img, rr, cc, True, "constant", 0.0)
    outside = (rr < 0) | (rr > h - 1) | (cc < 0) | (cc > w - 1)
    return np.where(outside, F32(a.get("pad_value", 0.0)), out)


@kernel("crop_resize")
def crop_resize(a, op):
    x = f32(a["x"])
    if "boxes" in a:  # iOS17: boxes [N, 4] and their image indices -> [N, C, h, w]
        boxes = np.asarray(a["boxes"], np.float64)
        idx = ints(a["box_indices"]) if a.get("box_indices") is not None else list(range(len(boxes)))
        return np.stack([_crop_one(x[i], box, a) for i, box in zip(idx, boxes)])
    roi = np.asarray(a["roi"], np.float64).reshape(np.shape(a["roi"])[0], -1)
    if roi.shape[1] == 5:  # [index, box]: one crop per box -> [N, 1, C, h, w]
        return np.stack([_crop_one(x[int(r[0])], r[1:], a)[None] for r in roi])
    return np.stack([np.stack([_crop_one(img, r, a) for img in x]) for r in roi])  # every image: [N, B, C, h, w]
