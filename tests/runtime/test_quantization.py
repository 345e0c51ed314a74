"""quantize / dequantize (kernels/quantization.py) vs torch's quantize_per_tensor/per_channel."""
import warnings

import numpy as np
import pytest
import torch
import coremltools as ct
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import types

from .helpers import check_op, run_program

RNG = np.random.default_rng(0)
warnings.filterwarnings("ignore", message="torch.quantize_per", category=UserWarning)
_TQ = {"int8": torch.qint8, "uint8": torch.quint8}


def _run(body, x):
    return run_program([("x", x.shape, types.fp32)], body, {"x": x}, ct.target.iOS17)


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_quantize_per_tensor_vs_torch(dtype):
    x = RNG.uniform(-80, 80, (4, 5)).astype(np.float32)  # some saturate
    zp = 3 if dtype == "int8" else 128
    np_dt = getattr(np, dtype)
    (q,) = _run(lambda v: mb.quantize(input=v, scale=np.float32(0.5), zero_point=np_dt(zp), output_dtype=dtype), x)
    want = torch.quantize_per_tensor(torch.from_numpy(x), 0.5, zp, _TQ[dtype]).int_repr().numpy()
    assert q.dtype == np_dt
    np.testing.assert_array_equal(q, want)


def test_quantize_ties_round_half_to_even_before_the_zero_point():
    """The definition: clip(round(x / scale) + zero_point); value_inference agrees. (torch rounds after
    adding the zero point: the two differ at exact halves when the zero point is odd.)"""
    x = np.array([0.25, 0.75, -0.25, 1.25], np.float32)
    body = lambda v: mb.quantize(input=v, scale=np.float32(0.5), zero_point=np.int8(3), output_dtype="int8")  # noqa: E731
    q = check_op(body, x, opset=ct.target.iOS17)[0]
    np.testing.assert_array_equal(q, [3, 5, 3, 5])  # round(0.5)=0, round(1.5)=2, round(-0.5)=0, round(2.5)=2
    assert not np.array_equal(q, np.floor(x / 0.5 + 0.5) + 3)  # not round half up


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_quantize_dequantize_per_axis_vs_torch(dtype):
    x = RNG.uniform(-40, 40, (3, 4, 2)).astype(np.float32)  # some values saturate
    scale = np.array([0.1, 0.2, 0.3, 0.25], np.float32)
    np_dt = getattr(np, dtype)
    zp = np.array([0, 1, -2, 5] if dtype == "int8" else [128, 120, 100, 0], np_dt)
    (q, d) = _run(lambda v: [mb.quantize(input=v, scale=scale, zero_point=zp, axis=1, output_dtype=dtype),
                             mb.dequantize(input=mb.quantize(input=v, scale=scale, zero_point=zp, axis=1,
                                                             output_dtype=dtype), scale=scale, zero_point=zp, axis=1)], x)
    tq = torch.quantize_per_channel(torch.from_numpy(x), torch.from_numpy(scale.astype(np.float64)),
                                    torch.from_numpy(zp.astype(np.int64)), 1, _TQ[dtype])
    np.testing.assert_array_equal(q, tq.int_repr().numpy())
    np.testing.assert_allclose(d, tq.dequantize().numpy(), rtol=1e-6)


def test_dequantize_without_zero_point():
    x = np.array([-128, -1, 0, 127], np.int8)
    (d,) = run_program([("x", x.shape, types.fp32)],
                       lambda v: mb.dequantize(input=mb.quantize(input=v, scale=np.float32(1), output_dtype="int8"),
                                               scale=np.float32(0.5)), {"x": x.astype(np.float32)}, ct.target.iOS17)
    np.testing.assert_array_equal(d, x * 0.5)
