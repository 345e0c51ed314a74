"""Resizing and resampling of the last two (spatial) dims: upsample/resize (nearest, bilinear),
iOS17 resize, crop, crop_resize, resample, affine.

Grid points follow the sampling modes of ops/defs/iOS15/image_resizing.py (resize_bilinear's
notes), for X input and N output samples along an axis:

- STRICT_ALIGN_CORNERS: linspace(0, X-1, N); ALIGN_CORNERS: the same, but (X-1)/2 when N == 1;
- DEFAULT: i * X / N (tf.image.resize, no half-pixel centres);
- OFFSET_CORNERS: delta = max(1, X-1) / N, 0.5*delta + i*delta;
- UNALIGN_CORNERS: (i + 0.5) * X / N - 0.5 (half-pixel centres);

every point clamped to [0, X-1]. Bilinear reads the two neighbours of a point. upsample_bilinear
recomputes its scale from the output size (N = floor(X * scale)): align_corners is STRICT, else
half_pixel_centers (iOS16, default: not align_corners) picks UNALIGN or DEFAULT.
upsample/resize_nearest_neighbor read floor(i * X / N); iOS17 resize NEAREST_NEIGHBOR rounds the
mode's grid point (coremltools' test: 2 -> 3 rows under DEFAULT reads rows 0, 1, 1).
"""
import numpy as np

from ..registry import kernel
from ._util import F32, f32, flag, ints

_MODES = ("STRICT_ALIGN_CORNERS", "ALIGN_CORNERS", "DEFAULT", "OFFSET_CORNERS", "UNALIGN_CORNERS")


def grid(mode, size_in, size_out):
    """Source coordinates of the ``size_out`` samples of an axis of ``size_in`` (float64)."""
    i = np.arange(size_out, dtype=np.float64)
    x, n = float(size_in), float(size_out)
    if mode == "ALIGN_CORNERS" and size_out == 1:
        g = np.full(1, (x - 1) / 2)
    elif mode in ("STRICT_ALIGN_CORNERS", "ALIGN_CORNERS"):
        g = i * ((x - 1) / (n - 1)) if size_out > 1 else np.zeros(1)
    elif mode == "DEFAULT":
        g = i * x / n
    elif mode == "OFFSET_CORNERS":
        delta = max(1.0, x - 1) / n
        g = 0.5 * delta + i * delta
    elif mode == "UNALIGN_CORNERS":
        g = (i + 0.5) * x / n - 0.5
    else:
        raise ValueError(f"unknown sampling mode {mode!r}; expected one of {_MODES}")
    return np.clip(g, 0, x - 1)


def linear_along(x, axis, points):
    """Linear interpolation of ``x`` along ``axis`` at fractional ``points`` (inside [0, X-1])."""
    lo = np.floor(points).astype(np.int64)
    hi = np.minimum(lo + 1, x.shape[axis] - 1)
    t = (points - lo).astype(F32)
    shape = [1] * x.ndim
    shape[axis] = -1
    t = t.reshape(shape)
    return np.take(x, lo, axis=axis) * (1 - t) + np.take(x, hi, axis=axis) * t


def _bilinear(x, mode, h_out, w_out):
    x = linear_along(x, -2, grid(mode, x.shape[-2], h_out))
    return linear_along(x, -1, grid(mode, x.shape[-1], w_out))


def _nearest_floor(x, h_out, w_out):
    rows = (np.arange(h_out) * x.shape[-2]) // h_out
    cols = (np.arange(w_out) * x.shape[-1]) // w_out
    return np.take(np.take(x, rows, axis=-2), cols, axis=-1)


def _scaled(size, scale):
    """floor(size * scale), in the scale's own dtype as the op's type inference computes it."""
    return int(np.floor(np.asarray(scale) * size))


@kernel("upsample_nearest_neighbor", exact=True)
def upsample_nearest_neighbor(a, op):
    x = np.asarray(a["x"])
    h = _scaled(x.shape[-2], a.get("scale_factor_height", 1))
    w = _scaled(x.shape[-1], a.get("scale_factor_width", 1))
    return _nearest_floor(x, h, w)


@kernel("resize_nearest_neighbor", exact=True)
def resize_nearest_neighbor(a, op):
    return _nearest_floor(np.asarray(a["x"]), int(a["target_size_height"]), int(a["target_size_width"]))


@kernel("upsample_bilinear")
def upsample_bilinear(a, op):
    x = f32(a["x"])
    h = _scaled(x.shape[-2], a.get("scale_factor_height", 1))
    w = _scaled(x.shape[-1], a.get("scale_factor_width", 1))
    align = flag(a, "align_corners", True)
    half_pixel = flag(a, "half_pixel_centers", not align)
    mode = "STRICT_ALIGN_CORNERS" if align else "UNALIGN_CORNERS" if half_pixel else "DEFAULT"
    return _bilinear(x, mode, h, w)


@kernel("resize_bilinear")
def resize_bilinear(a, op):
    x = f32(a["x"])
    return _bilinear(x, a.get("sampling_mode", "DEFAULT"), int(a.get("target_size_height", 1)),
                     int(a.get("target_size_width", 1)))


@kernel("resize")
def resize(a, op):
    """iOS17: the last ``resized_dims`` dims take their sizes from the end of ``shape`` (0 keeps one)."""
    x = np.asarray(a["x"])
    shape, k = ints(a["shape"]), int(a["resized_dims"])
    mode = a.get("sampling_mode", "DEFAULT")
    nearest = a.get("interpolation_mode", "LINEAR") == "NEAREST_NEIGHBOR"
    y = x if nearest else f32(x)
    for j in range(k):
        axis = x.ndim - k + j
        size = shape[len(shape) - k + j] or x.shape[axis]
        points = grid(mode, x.shape[axis], size)
        if nearest:
            y = np.take(y, np.floor(points + 0.5).astype(np.int64), axis=axis)
        else:
            y = linear_along(y, axis, points)
    return y


@kernel("crop", exact=True)
def crop(a, op):
    x = np.asarray(a["x"])
    (top, bottom), (left, right) = ints(a["crop_height"]), ints(a["crop_width"])
    return x[..., top:x.shape[-2] - bottom, left:x.shape[-1] - right]
