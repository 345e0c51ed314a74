"""avg_pool, max_pool, l2_pool (1-3 spatial dims) through torch's CPU pooling.

Padding follows the op definition (ops/defs/iOS15/pool.py, _utils.spatial_dimensions_out_shape):
valid / custom ``pad[2i], pad[2i+1]`` / same (odd pixel after) / same_lower (odd pixel before),
with conv's "same" totals. ``ceil_mode`` sizes the output with ceil, minus one when the last
window would start past the input and its left pad (and some padding is set): the rows that
ceil adds past the padded input are filled so that they never win (max) or count (avg, l2).
avg divides by the window's size within the padded input (zeros of ``pad`` counted), or with
``exclude_padding_from_average`` by the number of real input elements in the window.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import kernel
from ._util import F32, f32, flag, ints
from .conv import _same_pads

_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def _out_size(size, k, s, before, after, ceil):
    span = size + before + after - k
    if not ceil:
        return span // s + 1
    out = math.ceil(span / s) + 1
    if (out - 1) * s >= size + before and before + after > 0:
        out -= 1
    return out


def _geometry(a, x):
    """Per spatial dim: (kernel, stride, pad before, pad after, extra rows ceil_mode needs)."""
    n = x.ndim - 2
    kernel = ints(a["kernel_sizes"])
    strides = ints(a["strides"]) if a.get("strides") is not None else [1] * n
    pad_type = str(a.get("pad_type", "valid")).lower()
    ceil = flag(a, "ceil_mode")
    dims = []
    for i in range(n):
        size, k, s = x.shape[2 + i], kernel[i], strides[i]
        if pad_type == "custom":
            p = ints(a["pad"]) if a.get("pad") is not None else [0] * 2 * n
            before, after = p[2 * i], p[2 * i + 1]
        elif pad_type in ("same", "same_lower"):
            before, after = _same_pads(size, k, s, 1, pad_type == "same_lower")
        elif pad_type == "valid":
            before, after = 0, 0
        else:
            raise ValueError(f"unknown pad_type {pad_type!r}")
        out = _out_size(size, k, s, before, after, ceil)
        extra = max(0, (out - 1) * s + k - (size + before + after))
        dims.append((k, s, before, after, extra))
    return dims


def _padded(x, dims, value, extra_value=None):
    """x padded by pad before/after (with ``value``) and the ceil_mode rows (with ``extra_value``)."""
    widths = [(0, 0), (0, 0)] + [(b, e) for _, _, b, e, _ in dims]
    y = np.pad(x, widths, constant_values=value)
    widths = [(0, 0), (0, 0)] + [(0, x_) for *_, x_ in dims]
    return np.pad(y, widths, constant_values=value if extra_value is None else extra_value)


def _window_sums(v, dims):
    """Sum of every pooling window of ``v`` (already padded)."""
    n = len(dims)
    k, s = [d[0] for d in dims], [d[1] for d in dims]
    with torch.no_grad():
        mean = _AVG[n](torch.from_numpy(np.ascontiguousarray(v, dtype=F32)), k, s, 0)
    return mean.numpy() * F32(np.prod(k))


@kernel("max_pool")
def max_pool(a, op):
    x = f32(a["x"])
    dims = _geometry(a, x)
    v = _padded(x, dims, -np.inf)
    with torch.no_grad():
        y = _MAX[len(dims)](torch.from_numpy(np.ascontiguousarray(v)), [d[0] for d in dims], [d[1] for d in dims])
    return y.numpy()


@kernel("avg_pool")
def avg_pool(a, op):
    x = f32(a["x"])
    dims = _geometry(a, x)
    sums = _window_sums(_padded(x, dims, 0), dims)
    ones = np.ones((1, 1) + x.shape[2:], F32)
    if flag(a, "exclude_padding_from_average"):
        count = _window_sums(_padded(ones, dims, 0), dims)
    else:
        count = _window_sums(_padded(ones, dims, 1, extra_value=0), dims)  # pad zeros count, ceil rows do not
    return sums / np.maximum(count, 1)


@kernel("l2_pool")
def l2_pool(a, op):
    x = f32(a["x"])
    dims = _geometry(a, x)
    return np.sqrt(_window_sums(_padded(x * x, dims, 0), dims))
