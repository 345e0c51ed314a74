"""Block rearrangements (kernels/layout.py) vs torch / tf-convention numpy references."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import coremltools as ct
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import types

from .helpers import run_program

RNG = np.random.default_rng(0)


def _run(body, x, opset=ct.target.iOS17):
    return run_program([("x", x.shape, types.fp32)], body, {"x": x}, opset)[0]


def _tf_depth_to_space(x, b):
    """tf.nn.depth_to_space (DCR) written on NHWC, applied to NCHW data."""
    nhwc = x.transpose(0, 2, 3, 1)
    n, h, w, c = nhwc.shape
    y = nhwc.reshape(n, h, w, b, b, c // (b * b)).transpose(0, 1, 3, 2, 4, 5).reshape(n, h * b, w * b, c // (b * b))
    return y.transpose(0, 3, 1, 2)


def test_depth_to_space_is_dcr_not_crd():
    x = RNG.standard_normal((2, 8, 3, 4)).astype(np.float32)
    got = _run(lambda v: mb.depth_to_space(x=v, block_size=2), x)
    np.testing.assert_array_equal(got, _tf_depth_to_space(x, 2))
    assert not np.array_equal(got, F.pixel_shuffle(torch.from_numpy(x), 2).numpy())  # CRD is pixel_shuffle
    back = _run(lambda v: mb.space_to_depth(x=v, block_size=2), got)
    np.testing.assert_array_equal(back, x)


def test_pixel_shuffle_and_unshuffle_vs_torch():
    x = RNG.standard_normal((2, 12, 3, 5)).astype(np.float32)
    got = _run(lambda v: mb.pixel_shuffle(x=v, upscale_factor=2), x)
    np.testing.assert_array_equal(got, F.pixel_shuffle(torch.from_numpy(x), 2).numpy())
    y = RNG.standard_normal((2, 3, 6, 9)).astype(np.float32)
    got = _run(lambda v: mb.pixel_unshuffle(x=v, downscale_factor=np.uint32(3)), y, ct.target.iOS16)
    np.testing.assert_array_equal(got, F.pixel_unshuffle(torch.from_numpy(y), 3).numpy())


def _tf_space_to_batch(x, block, pads):
    """tf.space_to_batch_nd semantics on NCHW: batch (i*b1 + j)*N + n holds pixel (h*b0+i, w*b1+j)."""
    x = np.pad(x, [(0, 0), (0, 0), tuple(pads[0]), tuple(pads[1])])
    n, c, h, w = x.shape
    b0, b1 = block
    out = np.empty((b0 * b1 * n, c, h // b0, w // b1), x.dtype)
    for i in range(b0):
        for j in range(b1):
            out[(i * b1 + j) * n:(i * b1 + j + 1) * n] = x[:, :, i::b0, j::b1]
    return out


def test_space_to_batch_and_back():
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    pads = [[0, 2], [1, 0]]
    got = _run(lambda v: mb.space_to_batch(x=v, block_shape=[2, 3], paddings=pads), x)
    np.testing.assert_array_equal(got, _tf_space_to_batch(x, (2, 3), pads))
    back = _run(lambda v: mb.batch_to_space(x=v, block_shape=[2, 3], crops=pads), got)
    np.testing.assert_array_equal(back, x)


@pytest.mark.parametrize("axis,size,stride", [(1, 3, 1), (-1, 2, 3), (0, 4, 2)])
def test_sliding_windows(axis, size, stride):
    x = RNG.standard_normal((6, 7, 9)).astype(np.float32)
    got = _run(lambda v: mb.sliding_windows(x=v, axis=axis, size=size, stride=stride), x)
    ax = axis % 3
    want = np.moveaxis(torch.from_numpy(x).unfold(ax, size, stride).numpy(), -1, ax + 1)  # torch puts size last
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seq_axis,batch_axis", [(1, 0), (0, 2)])
def test_reverse_sequence_vs_per_slice_flip(seq_axis, batch_axis):
    x = RNG.standard_normal((4, 5, 3)).astype(np.float32)
    lengths = RNG.integers(0, x.shape[seq_axis] + 1, x.shape[batch_axis]).astype(np.int32)
    lengths[0] = x.shape[seq_axis]  # the whole sequence, and (below) an empty one
    lengths[-1] = 0
    got = run_program([("x", x.shape, types.fp32), ("l", lengths.shape, types.int32)],
                      lambda v, l: mb.reverse_sequence(x=v, lengths=l, seq_axis=seq_axis, batch_axis=batch_axis),
                      {"x": x, "l": lengths})[0]
    want = x.copy()
    for b, n in enumerate(lengths):
        idx = [slice(None)] * 3
        idx[batch_axis], idx[seq_axis] = b, slice(0, n)
        want[tuple(idx)] = np.flip(x[tuple(idx)], axis=seq_axis - (batch_axis < seq_axis))
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, x)


def test_crop():
    x = RNG.standard_normal((2, 3, 7, 8)).astype(np.float32)
    got = _run(lambda v: mb.crop(x=v, crop_height=[1, 2], crop_width=[3, 0]), x)
    np.testing.assert_array_equal(got, x[..., 1:5, 3:])
