"""conv / conv_transpose through torch's CPU kernels (numpy has no conv).

MIL padding rules (coremltools ops/defs/_utils.py):
- valid: no padding; custom: ``pad[2i], pad[2i+1]`` before/after;
- same: total = max((ceil(D/s)-1)*s + (K-1)*d + 1 - D, 0), before = total//2;
- same_lower: like same but the odd pixel goes before.
conv_transpose crops its full output by the same pads, and an explicit
``output_shape`` fixes the output size (cropping/zero-padding the end).
"""
import numpy as np
import torch
import torch.nn.functional as F

from ..registry import kernel
from ._util import F32, ints

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _params(a, n):
    strides = ints(a["strides"]) if a.get("strides") is not None else [1] * n
    dil = ints(a["dilations"]) if a.get("dilations") is not None else [1] * n
    return strides, dil, int(a.get("groups", 1)), a.get("pad_type", "valid")


def _same_pads(size, k, s, d, lower):
    eff = (k - 1) * d + 1
    out = -(-size // s)
    total = max((out - 1) * s + eff - size, 0)
    small = total // 2
    return (total - small, small) if lower else (small, total - small)


def _conv_pads(a, x, w, strides, dil, pad_type):
    n = x.ndim - 2
    if pad_type == "custom":
        p = ints(a["pad"])
        return [(p[2 * i], p[2 * i + 1]) for i in range(n)]
    if pad_type in ("same", "same_lower"):
        return [_same_pads(x.shape[2 + i], w.shape[2 + i], strides[i], dil[i], pad_type == "same_lower") for i in range(n)]
    if pad_type == "valid":
        return [(0, 0)] * n
    raise ValueError(f"unknown pad_type {pad_type!r}")


def _t(v):
    return torch.from_numpy(np.ascontiguousarray(v, dtype=F32))


@kernel("conv")
def conv(a, op):
    x, w = a["x"], a["weight"]
    n = x.ndim - 2
    strides, dil, groups, pad_type = _params(a, n)
    pads = _conv_pads(a, x, w, strides, dil, pad_type)
    tx = _t(x)
    if any(b != e for b, e in pads):
        # torch pads symmetrically only: pad explicitly (last dim first)
        flat = [p for b, e in reversed(pads) for p in (b, e)]
        tx, pad_arg = F.pad(tx, flat), 0
    else:
        pad_arg = [b for b, _ in pads]
    bias = a.get("bias")
    with torch.no_grad():
        y = _CONV[n](tx, _t(w), None if bias is None else _t(bias), strides, pad_arg, dil, groups)
    return y.numpy()


@kernel("conv_transpose")
def conv_transpose(a, op):
    x, w = a["x"], a["weight"]  # weight [C_in, C_out/groups, *K]
    n = x.ndim - 2
    strides, dil, groups, pad_type = _params(a, n)
    bias = a.get("bias")
    with torch.no_grad():
        full = _CONV_T[n](_t(x), _t(w), None if bias is None else _t(bias), strides, 0, 0, groups, dil).numpy()
    out_shape = ints(a["output_shape"])[2:] if a.get("output_shape") is not None else None
    idx = [slice(None), slice(None)]
    for i in range(n):
        size = full.shape[2 + i]
        if pad_type == "custom":
            p = ints(a["pad"])
            before, after = p[2 * i], p[2 * i + 1]
        elif pad_type in ("same", "same_lower"):
            total = size - x.shape[2 + i] * strides[i]
            small = total // 2
            before, after = (total - small, small) if pad_type == "same_lower" else (small, total - small)
        else:
            before, after = 0, 0
        end = size - after if out_shape is None else before + out_shape[i]
        idx.append(slice(before, end))
    y = full[tuple(idx)]
    if out_shape is not None and list(y.shape[2:]) != out_shape:
        # output_shape longer than the full result: zero-pad at the end
        grow = [(0, 0), (0, 0)] + [(0, o - s) for o, s in zip(out_shape, y.shape[2:])]
        y = np.pad(y, grow)
    return y


@kernel("conv_quantized")
def conv_quantized(a, op):
    """conv with a uint8 weight: "linear" W = W_q * quant_scale + quant_bias, "lut" W = quant_scale[W_q]
    (quant_scale the table), scale/bias per output channel or scalar. (Experimental in coremltools;
    only its neural-network backend emits it.)"""
    wq = np.asarray(a["weight"])
    scale = np.asarray(a["quant_scale"], F32)
    if a["quantization_type"] == "lut":
        w = scale.reshape(-1)[wq.astype(np.int64)]
    else:
        shape = (-1,) + (1,) * (wq.ndim - 1)
        bias = np.asarray(a["quant_bias"], F32)
        w = wq.astype(F32) * (scale.reshape(shape) if scale.size > 1 else scale) + (bias.reshape(shape) if bias.size > 1 else bias)
    return conv(dict(a, weight=w), op)
