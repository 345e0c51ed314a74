"""linear / matmul / einsum, via BLAS (np.matmul on fp32)."""
import numpy as np

from ..registry import kernel
from ._util import f32, flag


@kernel("linear", fresh=True)
def linear(a, op):
    x, w = f32(a["x"]), a["weight"]  # weight [out, in], kept fp32 by the constant loader
    # 2-D matmul so numpy makes a single GEMM/GEMV call for any batch shape
    y = np.matmul(x.reshape(-1, x.shape[-1]), w.T).reshape(x.shape[:-1] + (w.shape[0],))
    b = a.get("bias")
    if b is not None:
        y += b
    return y


@kernel("matmul", fresh=True)
def matmul(a, op):
    x, y = f32(a["x"]), f32(a["y"])
    if flag(a, "transpose_x") and x.ndim > 1:
        x = np.swapaxes(x, -1, -2)
    if flag(a, "transpose_y") and y.ndim > 1:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


@kernel("einsum")
def einsum(a, op):
    vals = [f32(v) for v in a["values"]]
    return np.einsum(a["equation"], *vals, optimize=True)
