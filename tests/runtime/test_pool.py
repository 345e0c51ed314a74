"""avg/max/l2 pooling (kernels/pool.py) vs torch: pad types, ceil_mode, exclude_padding_from_average."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import coremltools as ct
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import types

from .helpers import run_program

RNG = np.random.default_rng(0)
_T = {"avg_pool": F.avg_pool2d, "max_pool": F.max_pool2d}


def _run(body, x, opset=ct.target.iOS17):
    return run_program([("x", x.shape, types.fp32)], body, {"x": x}, opset)[0]


@pytest.mark.parametrize("op", ["avg_pool", "max_pool"])
@pytest.mark.parametrize("ceil", [False, True])
@pytest.mark.parametrize("pad", [0, 1])
def test_pool_custom_pad_and_ceil_vs_torch(op, ceil, pad):
    x = RNG.standard_normal((2, 3, 9, 10)).astype(np.float32)
    kw = dict(kernel_sizes=[3, 2], strides=[2, 3], pad_type="custom", pad=[pad, pad, pad, pad], ceil_mode=ceil)
    got = _run(lambda v: getattr(mb, op)(x=v, **kw), x)
    targs = dict(kernel_size=(3, 2), stride=(2, 3), padding=pad, ceil_mode=ceil)
    if op == "avg_pool":
        targs["count_include_pad"] = True
    want = _T[op](torch.from_numpy(x), **targs).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_avg_pool_exclude_padding_vs_torch():
    x = RNG.standard_normal((1, 2, 7, 7)).astype(np.float32)
    got = _run(lambda v: mb.avg_pool(x=v, kernel_sizes=[3, 3], strides=[2, 2], pad_type="custom", pad=[1, 1, 1, 1],
                                     exclude_padding_from_average=True), x)
    want = F.avg_pool2d(torch.from_numpy(x), 3, 2, 1, count_include_pad=False).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    with_pad = F.avg_pool2d(torch.from_numpy(x), 3, 2, 1, count_include_pad=True).numpy()
    assert not np.allclose(got, with_pad, atol=1e-3)


@pytest.mark.parametrize("pad_type,before", [("same", lambda t: t // 2), ("same_lower", lambda t: t - t // 2)])
def test_same_padding_puts_the_odd_pixel_where_the_mode_says(pad_type, before):
    x = RNG.standard_normal((1, 1, 8, 8)).astype(np.float32)
    got = _run(lambda v: mb.max_pool(x=v, kernel_sizes=[4, 4], strides=[1, 1], pad_type=pad_type), x)
    total = 3  # (ceil(8/1) - 1) * 1 + 4 - 8
    b = before(total)
    padded = F.pad(torch.from_numpy(x), (b, total - b, b, total - b), value=-np.inf)
    np.testing.assert_array_equal(got, F.max_pool2d(padded, 4, 1).numpy())


def test_pool_1d_and_3d_and_same_lower_avg_example():
    x = RNG.standard_normal((2, 3, 11)).astype(np.float32)
    got = _run(lambda v: mb.avg_pool(x=v, kernel_sizes=[3], strides=[2], pad_type="valid"), x)
    np.testing.assert_allclose(got, F.avg_pool1d(torch.from_numpy(x), 3, 2).numpy(), atol=1e-6)
    y = RNG.standard_normal((1, 2, 5, 6, 7)).astype(np.float32)
    got = _run(lambda v: mb.max_pool(x=v, kernel_sizes=[2, 3, 2], strides=[2, 1, 3], pad_type="valid"), y)
    np.testing.assert_array_equal(got, F.max_pool3d(torch.from_numpy(y), (2, 3, 2), (2, 1, 3)).numpy())
    # coremltools' example: [[1, 2], [3, 4]], 2x2 window, same_lower -> [0.25, 0.75, 1, 2.5]
    z = np.arange(1, 5, dtype=np.float32).reshape(1, 1, 2, 2)
    got = _run(lambda v: mb.avg_pool(x=v, kernel_sizes=[2, 2], pad_type="same_lower"), z)
    np.testing.assert_allclose(got.reshape(-1), [0.25, 0.75, 1, 2.5])


def test_l2_pool_vs_torch_lp_pool():
    x = RNG.standard_normal((2, 3, 8, 9)).astype(np.float32)
    got = _run(lambda v: mb.l2_pool(x=v, kernel_sizes=[2, 3], strides=[2, 2], pad_type="valid"), x)
    np.testing.assert_allclose(got, F.lp_pool2d(torch.from_numpy(x), 2, (2, 3), (2, 2)).numpy(), rtol=1e-5)
