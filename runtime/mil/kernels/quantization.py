"""quantize / dequantize (iOS17): affine int8/uint8 with per-tensor or per-axis scale and zero point.

quantize: clip(round(x / scale) + zero_point) in the output dtype's range, rounding half to even
(torch.quantize_per_tensor, which coremltools' tests compare with); dequantize: (q - zero_point)
* scale. A vector scale/zero_point lies along ``axis``; a scalar applies to every element.
"""
import numpy as np

from ..registry import kernel
from ._util import F32, axis_of, f32


def _along(param, rank, a):
    p = np.asarray(param, np.float32)
    if p.ndim == 0 or p.size == 1 and a.get("axis") is None:
        return p.reshape(())
    shape = [1] * rank
    shape[axis_of(a, "axis", rank)] = -1
    return p.reshape(shape)


@kernel("quantize")
def quantize(a, op):
    x = f32(a["input"])
    out = op.out_dtypes[0]
    q = np.rint(x / _along(a["scale"], x.ndim, a))
    if a.get("zero_point") is not None:
        q = q + _along(a["zero_point"], x.ndim, a)
    info = np.iinfo(out)
    return np.clip(q, info.min, info.max).astype(out)


@kernel("dequantize")
def dequantize(a, op):
    q = np.asarray(a["input"]).astype(F32)
    if a.get("zero_point") is not None:
        q = q - _along(a["zero_point"], q.ndim, a)
    return q * _along(a["scale"], q.ndim, a)
