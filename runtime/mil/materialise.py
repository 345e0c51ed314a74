"""Materialise const and constexpr_* ops once, as fp32 (floats) arrays.

Weights stay fp32 for compute: numpy fp16 matmul is very slow, and fp16
weight values are exactly representable in fp32 anyway.
"""
import logging

import numpy as np

log = logging.getLogger(__name__)

try:
    import torch as _torch
except ImportError:  # pragma: no cover - torch only speeds things up here
    _torch = None


def to_compute(val):
    """A const value in compute form: float arrays as fp32, strings kept."""
    if isinstance(val, (str, bytes)) or val is None:
        return val
    arr = np.asarray(val)
    if arr.dtype.kind == "f" and arr.dtype != np.float32:
        arr = _widen(arr)
    return arr


def _widen(arr):
    """fp16/fp64 -> fp32; torch's conversion is ~5x numpy's for big weights."""
    if _torch is not None and arr.dtype == np.float16 and arr.size >= 65536:
        return _torch.from_numpy(np.ascontiguousarray(arr)).float().numpy()
    return arr.astype(np.float32)


def affine_dequantize(quantized, zero_point, scale, axis):
    """constexpr_affine_dequantize: (q - zp) * scale, zp/scale along ``axis``."""
    q = np.asarray(quantized).astype(np.float32)
    shape = [1] * q.ndim
    zp, sc = np.asarray(zero_point, np.float32), np.asarray(scale, np.float32)
    if sc.ndim == 1 and sc.size > 1:
        shape[int(axis) % q.ndim] = -1
        sc = sc.reshape(shape)
    if zp.ndim == 1 and zp.size > 1:
        shape[int(axis) % q.ndim] = -1
        zp = zp.reshape(shape)
    return (q - zp) * sc


def blockwise_shift_scale(data, scale, offset=None):
    """constexpr_blockwise_shift_scale: (data - offset) * scale per block.

    ``scale``/``offset`` have the rank of ``data``; along each axis a block
    covers data.shape[i] // scale.shape[i] elements.
    """
    d = np.asarray(data).astype(np.float32)
    sc = _expand_blocks(np.asarray(scale, np.float32), d.shape)
    if offset is not None:
        d = d - _expand_blocks(np.asarray(offset, np.float32), d.shape)
    return d * sc


def _expand_blocks(param, shape):
    for axis, (n, m) in enumerate(zip(shape, param.shape)):
        if m != n and m != 1:
            param = np.repeat(param, n // m, axis=axis)
    return param


def materialise(op):
    """Values of a const/constexpr op's outputs, as a list."""
    if op.op_type == "const":
        return [to_compute(op.outputs[0].val)]
    if op.op_type == "constexpr_affine_dequantize":
        return [affine_dequantize(op.quantized_data.val, op.zero_point.val, op.scale.val, op.axis.val)]
    if op.op_type == "constexpr_blockwise_shift_scale":
        offset = op.offset.val if op.offset is not None else None
        return [blockwise_shift_scale(op.data.val, op.scale.val, offset)]
    # lut_to_dense, sparse_to_dense, cast, ...: coremltools' own reference
    vals = op.value_inference()
    vals = vals if isinstance(vals, tuple) else (vals,)
    return [to_compute(v) for v in vals]


def is_constant_op(op):
    return op.op_type == "const" or op.op_type.startswith("constexpr_")
