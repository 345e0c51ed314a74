"""Resize / resample kernels (kernels/image.py, kernels/sampling.py) vs torch and the op definitions' examples."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import coremltools as ct
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import types

from .helpers import run_program

RNG = np.random.default_rng(0)


def _run(body, *arrays, opset=ct.target.iOS17):
    specs = [(f"a{i}", a.shape, types.numpy_type_to_builtin_type(a.dtype)) for i, a in enumerate(arrays)]
    return run_program(specs, body, {f"a{i}": a for i, a in enumerate(arrays)}, opset)


# resize_bilinear's docstring: input [0, 1] (Xin = 2), grid points for Xout = 5 and 6
GRIDS = {
    ("UNALIGN_CORNERS", 5): [0, 0.1, 0.5, 0.9, 1], ("UNALIGN_CORNERS", 6): [0, 0, 1 / 3, 2 / 3, 1, 1],
    ("STRICT_ALIGN_CORNERS", 5): [0, 0.25, 0.5, 0.75, 1], ("STRICT_ALIGN_CORNERS", 6): [0, 0.2, 0.4, 0.6, 0.8, 1],
    ("ALIGN_CORNERS", 5): [0, 0.25, 0.5, 0.75, 1], ("ALIGN_CORNERS", 1): [0.5],
    ("DEFAULT", 5): [0, 0.4, 0.8, 1, 1], ("DEFAULT", 6): [0, 1 / 3, 2 / 3, 1, 1, 1],
    ("OFFSET_CORNERS", 5): [0.1, 0.3, 0.5, 0.7, 0.9],
    ("OFFSET_CORNERS", 6): [1 / 12, 0.25, 5 / 12, 7 / 12, 0.75, 11 / 12],
}


@pytest.mark.parametrize("mode,n", list(GRIDS))
def test_resize_bilinear_sampling_modes(mode, n):
    x = np.array([0, 1], np.float32).reshape(1, 1, 2)
    (got,) = _run(lambda v: mb.resize_bilinear(x=v, target_size_height=1, target_size_width=n, sampling_mode=mode), x)
    np.testing.assert_allclose(got.reshape(-1), GRIDS[(mode, n)], atol=1e-6)


@pytest.mark.parametrize("scale", [(2, 3), (2.5, 2.0), (0.5, 0.75)])
@pytest.mark.parametrize("align", [True, False])
def test_upsample_bilinear_vs_torch(scale, align):
    x = RNG.standard_normal((1, 2, 6, 8)).astype(np.float32)
    (got,) = _run(lambda v: mb.upsample_bilinear(x=v, scale_factor_height=scale[0], scale_factor_width=scale[1],
                                                  align_corners=align), x)
    want = F.interpolate(torch.from_numpy(x), scale_factor=scale, mode="bilinear", align_corners=align,
                         recompute_scale_factor=True).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("align,half,want", [
    (True, False, [1.0, 1.2, 1.4, 1.6, 1.8, 2.0]),
    (False, True, [1.0, 1.0, 4 / 3, 5 / 3, 2.0, 2.0]),
    (False, False, [1.0, 4 / 3, 5 / 3, 2.0, 2.0, 2.0]),
])
def test_upsample_bilinear_half_pixel_centers(align, half, want):
    x = np.array([1, 2], np.float32).reshape(1, 1, 1, 2)
    (got,) = _run(lambda v: mb.upsample_bilinear(x=v, scale_factor_height=2, scale_factor_width=3, align_corners=align,
                                                  half_pixel_centers=half), x, opset=ct.target.iOS16)
    np.testing.assert_allclose(got[0, 0, 0], want, atol=1e-6)
    np.testing.assert_allclose(got[0, 0, 1], want, atol=1e-6)


@pytest.mark.parametrize("scale", [(2, 3), (3.17, 0.67), (1.0, 1.12)])
def test_upsample_nearest_vs_torch(scale):
    x = RNG.standard_normal((1, 2, 5, 7)).astype(np.float32)
    (got,) = _run(lambda v: mb.upsample_nearest_neighbor(x=v, scale_factor_height=scale[0],
                                                          scale_factor_width=scale[1]), x)
    size = (int(5 * scale[0]), int(7 * scale[1]))  # the output size; torch reads floor(i * in / out) for it
    np.testing.assert_array_equal(got, F.interpolate(torch.from_numpy(x), size=size, mode="nearest").numpy())


def test_resize_nearest_neighbor_vs_torch():
    x = RNG.standard_normal((2, 3, 5, 4)).astype(np.float32)
    (got,) = _run(lambda v: mb.resize_nearest_neighbor(x=v, target_size_height=7, target_size_width=3), x)
    np.testing.assert_array_equal(got, F.interpolate(torch.from_numpy(x), size=(7, 3), mode="nearest").numpy())


def test_ios17_resize_linear_and_nearest():
    x = RNG.standard_normal((1, 2, 4, 6)).astype(np.float32)
    (lin,) = _run(lambda v: mb.resize(x=v, shape=[7, 0], resized_dims=np.uint32(2), sampling_mode="UNALIGN_CORNERS"), x)
    want = F.interpolate(torch.from_numpy(x), size=(7, 6), mode="bilinear", align_corners=False).numpy()
    np.testing.assert_allclose(lin, want, atol=1e-5)  # a 0 in shape keeps the width
    # coremltools' example: 2 -> 3 rows under DEFAULT reads rows 0, 1, 1 (the grid point rounded)
    y = np.array([-6.174, 9.371], np.float32).reshape(1, 1, 2, 1)
    (near,) = _run(lambda v: mb.resize(x=v, shape=[1, 1, 3, 2], resized_dims=np.uint32(2),
                                       interpolation_mode="NEAREST_NEIGHBOR"), y)
    np.testing.assert_array_equal(near[0, 0], y[0, 0][[0, 1, 1]][:, [0, 0]])


def _bilinear_point(img, h, w, pad=0.0):
    """One bilinear read of a 2-D image with constant padding (a plain reference)."""
    h0, w0 = int(np.floor(h)), int(np.floor(w))
    total = 0.0
    for dh, wh in ((0, 1 - (h - h0)), (1, h - h0)):
        for dw, ww in ((0, 1 - (w - w0)), (1, w - w0)):
            r, c = h0 + dh, w0 + dw
            v = img[r, c] if 0 <= r < img.shape[0] and 0 <= c < img.shape[1] else pad
            total += wh * ww * v
    return total


@pytest.mark.parametrize("opset", [ct.target.iOS15, ct.target.iOS16, ct.target.iOS17])
def test_crop_resize_align_corners_boxes(opset):
    x = RNG.standard_normal((2, 3, 6, 7)).astype(np.float32)
    boxes = np.array([[1.0, 0.5, 4.0, 5.5], [4.5, 6.0, 0.0, 2.0], [2.0, 2.0, 7.5, 3.0]], np.float32)  # h0 w0 h1 w1
    idx = np.array([1, 0, 1], np.int32)
    kw = dict(target_height=3, target_width=4, sampling_mode="ALIGN_CORNERS")
    if opset >= ct.target.iOS17:
        body = lambda v: mb.crop_resize(x=v, boxes=boxes, box_indices=idx, pad_value=-9.0, **kw)  # noqa: E731
    else:
        roi = np.concatenate([idx[:, None].astype(np.float32), boxes], 1).reshape(3, 1, 5, 1, 1)
        extra = {"pad_value": -9.0} if opset >= ct.target.iOS16 else {}
        body = lambda v: mb.crop_resize(x=v, roi=roi, **kw, **extra)  # noqa: E731
    (got,) = _run(body, x, opset=opset)
    got = got.reshape(3, 3, 3, 4)
    pad = -9.0 if opset >= ct.target.iOS16 else 0.0
    for n, (h0, w0, h1, w1) in enumerate(boxes):
        for i, hh in enumerate(np.linspace(h0, h1, 3)):
            for j, ww in enumerate(np.linspace(w0, w1, 4)):
                outside = not (0 <= hh <= 5 and 0 <= ww <= 6)
                for c in range(3):
                    want = pad if outside else _bilinear_point(x[idx[n], c], hh, ww)
                    assert got[n, c, i, j] == pytest.approx(want, abs=1e-5), (n, c, i, j)


_TORCH_PADDING = {"constant": "zeros", "border": "border"}


@pytest.mark.parametrize("sampling", ["bilinear", "nearest"])
@pytest.mark.parametrize("padding,align", [("constant", True), ("constant", False), ("border", True),
                                           ("border", False), ("reflection", True), ("symmetric", False)])
def test_resample_vs_torch_grid_sample(sampling, padding, align):
    x = RNG.standard_normal((2, 3, 5, 6)).astype(np.float32)
    coords = RNG.uniform(-1.6, 1.6, (2, 4, 7, 2)).astype(np.float32)
    (got,) = _run(lambda v, c: mb.resample(x=v, coordinates=c, sampling_mode=sampling, padding_mode=padding,
                                            padding_value=0.0, coordinates_mode="normalized_minus_one_to_one",
                                            align_corners=align), x, coords)
    # torch reflects about pixel centres with align_corners, about the outer edges without: MIL's
    # "reflection" and "symmetric"
    mode = _TORCH_PADDING.get(padding, "reflection")
    want = F.grid_sample(torch.from_numpy(x), torch.from_numpy(coords), mode=sampling, padding_mode=mode,
                         align_corners=align).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("mode,to_pixels", [("unnormalized", lambda c, n: c),
                                            ("normalized_zero_to_one", lambda c, n: c * (n - 1))])
def test_resample_coordinate_modes(mode, to_pixels):
    x = RNG.standard_normal((1, 1, 4, 5)).astype(np.float32)
    pix = np.array([[[[0.5, 1.25], [3.9, 2.0]]]], np.float32)  # (w, h) in pixels
    coords = np.stack([pix[..., 0] / (4 if mode != "unnormalized" else 1),
                       pix[..., 1] / (3 if mode != "unnormalized" else 1)], -1).astype(np.float32)
    (got,) = _run(lambda v, c: mb.resample(x=v, coordinates=c, sampling_mode="bilinear", padding_mode="constant",
                                            padding_value=0.0, coordinates_mode=mode, align_corners=True), x, coords)
    for j, (w, h) in enumerate(pix[0, 0]):
        assert got[0, 0, 0, j] == pytest.approx(_bilinear_point(x[0, 0], h, w), abs=1e-5)


def test_affine_vs_torch_affine_grid():
    x = RNG.standard_normal((2, 3, 5, 6)).astype(np.float32)
    theta = RNG.uniform(-1, 1, (2, 6)).astype(np.float32)
    (got,) = _run(lambda v, t: mb.affine(x=v, transform_matrix=t, output_height=4, output_width=7,
                                          sampling_mode="bilinear", padding_mode="constant", padding_value=0.0,
                                          coordinates_mode="normalized_minus_one_to_one", align_corners=True),
                  x, theta, opset=ct.target.iOS15)
    g = F.affine_grid(torch.from_numpy(theta).reshape(2, 2, 3), (2, 3, 4, 7), align_corners=True)
    want = F.grid_sample(torch.from_numpy(x), g, mode="bilinear", padding_mode="zeros", align_corners=True).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("scale", [0.7, 0.29, 1.13, 2.6])
def test_upsample_output_size_is_the_declared_one(scale):
    """floor(size * scale) computed as the op's type inference computes it (fp32 scale, not float64)."""
    x = RNG.standard_normal((1, 1, 10, 13)).astype(np.float32)

    def body(v):
        return mb.upsample_bilinear(x=v, scale_factor_height=np.float32(scale), scale_factor_width=np.float32(scale))

    @mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=ct.target.iOS17)
    def prog(v):
        return body(v)

    (got,) = _run(body, x)
    assert got.shape == tuple(prog.functions["main"].outputs[0].shape)


@pytest.mark.parametrize("mode,n", list(GRIDS))
def test_ios17_resize_linear_sampling_modes(mode, n):
    x = np.array([0, 1], np.float32).reshape(1, 1, 2)
    (got,) = _run(lambda v: mb.resize(x=v, shape=[1, n], resized_dims=np.uint32(2), sampling_mode=mode), x)
    np.testing.assert_allclose(got.reshape(-1), GRIDS[(mode, n)], atol=1e-6)
