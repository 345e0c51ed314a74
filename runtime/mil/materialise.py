"""Materialise const and constexpr_* ops once, natively, as compute-form arrays (floats as fp32).

Weights stay fp32 for compute: numpy fp16 matmul is very slow, and fp16
weight values are exactly representable in fp32 anyway. A constexpr output
declared fp16 is rounded through float16 first: it is a weight the package
holds in fp16 (coremltools' own decompression casts to the scale's dtype too).

Every constexpr op of the iOS16 and iOS18 opsets is decoded here, from the
op definitions in coremltools.converters.mil.mil.ops.defs (iOS16/constexpr_ops,
iOS18/compression): coremltools 9.0's value_inference raises NotImplementedError
for most of them. iOS18 ops may read another constexpr op's output (a
sparse_to_dense after a lut_to_sparse); those inputs are materialised first.
Sub-byte iOS18 types (uint1..uint6, int4) arrive from the loader already
unpacked into uint8/int8 arrays; the iOS16 ops pack indices and masks into
bytes, least significant bit first, which is decoded here.
"""
import logging

import numpy as np
from coremltools.converters.mil.mil import types

from .. import fp16

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


# ---- decoders (plain numpy in, numpy out) ------------------------------------

def affine_dequantize(quantized, zero_point, scale, axis):
    """constexpr_affine_dequantize: (q - zp) * scale, zp/scale vectors along ``axis``."""
    q = np.asarray(quantized)
    zp, sc = _along(zero_point, axis, q.ndim), _along(scale, axis, q.ndim)
    if _torch is not None and q.size >= 65536:
        # in place on torch's threads: numpy's three passes and two temporaries took 3.0 of the
        # 7.9 s a full-size int8 base LM step took to load; fp32 sub and mul round the same
        w = _torch.from_numpy(np.ascontiguousarray(q)).float()
        return w.sub_(_torch.from_numpy(zp)).mul_(_torch.from_numpy(sc)).numpy()
    return (q.astype(np.float32) - zp) * sc


def _along(param, axis, rank):
    """A per-tensor (scalar or size-1) or per-channel parameter, as fp32 shaped to broadcast along ``axis``."""
    p = np.asarray(param, np.float32)
    if p.ndim == 1 and p.size > 1:
        shape = [1] * rank
        shape[int(axis) % rank] = -1
        p = p.reshape(shape)
    return p


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


def unpack_bits(packed, nbits, count):
    """``count`` unsigned ``nbits``-bit fields packed LSB first into bytes (iOS16 LUT indices, masks)."""
    bits = np.unpackbits(np.asarray(packed).astype(np.uint8), bitorder="little")
    if bits.size < count * nbits:
        raise ValueError(f"{bits.size} packed bits cannot hold {count} fields of {nbits} bits")
    fields = bits[: count * nbits].reshape(count, nbits).astype(np.uint16)
    return (fields << np.arange(nbits, dtype=np.uint16)).sum(axis=1)


def lut_to_dense_ios16(indices, lut, shape):
    """iOS16 constexpr_lut_to_dense: one LUT of 2**nbits entries, indices packed in bytes."""
    lut = np.asarray(lut)
    nbits = int(np.log2(lut.size))
    count = int(np.prod(shape, dtype=np.int64))
    return lut[unpack_bits(indices, nbits, count)].reshape(tuple(int(s) for s in shape))


def lut_to_dense(indices, lut, vector_axis=None):
    """iOS18 constexpr_lut_to_dense: a LUT per block of indices, entries of VECTOR_SIZE values.

    ``lut`` is [*groups, NUM_PALETTES, VECTOR_SIZE] with one group dim per indices dim (a dim of
    size g splits that indices dim into g equal blocks). With VECTOR_SIZE > 1 each index yields
    VECTOR_SIZE consecutive values along ``vector_axis``.
    """
    idx, lut = np.asarray(indices).astype(np.int64), np.asarray(lut)
    k = idx.ndim
    # the LUT block of every element: position // block size, per dim (broadcast grids)
    grid = [(np.arange(n) // (n // g)).reshape([-1 if d == i else 1 for d in range(k)])
            for i, (n, g) in enumerate(zip(idx.shape, lut.shape[:k]))]
    vals = lut[tuple(grid) + (idx,)]  # indices.shape + (VECTOR_SIZE,)
    vec = lut.shape[-1]
    if vec == 1:
        return vals[..., 0]
    if vector_axis is None:
        raise ValueError("constexpr_lut_to_dense: VECTOR_SIZE > 1 needs vector_axis")
    ax = int(vector_axis) % k
    vals = np.moveaxis(vals, -1, ax + 1)  # the vector right after its index along the axis
    shape = list(idx.shape)
    shape[ax] *= vec
    return vals.reshape(shape)


def sparse_to_dense_ios16(nonzero, mask, shape):
    """iOS16 constexpr_sparse_to_dense: a bit mask packed in bytes, LSB first, row-major."""
    count = int(np.prod(shape, dtype=np.int64))
    bits = unpack_bits(mask, 1, count).astype(bool)
    return _scatter_nonzero(np.asarray(nonzero), bits).reshape(tuple(int(s) for s in shape))


def sparse_to_dense(nonzero, mask):
    """iOS18 constexpr_sparse_to_dense: ``mask`` (uint1, unpacked) has the output's shape."""
    return _scatter_nonzero(np.asarray(nonzero), np.asarray(mask) != 0)


def _scatter_nonzero(nonzero, mask):
    if int(mask.sum()) != nonzero.size:
        raise ValueError(f"sparse mask has {int(mask.sum())} set bits for {nonzero.size} nonzero values")
    out = np.zeros(mask.shape, dtype=nonzero.dtype)
    out[mask] = nonzero.reshape(-1)
    return out


def lut_to_sparse(indices_mask, indices_nonzero, lut, vector_axis=None):
    """constexpr_lut_to_sparse: (mask, values) of the LUT decoded at the set mask positions.

    The LUT block of a value depends on its position in the dense layout, so the indices are
    placed there first; with vector entries the mask is repeated VECTOR_SIZE times along the axis.
    """
    mask = np.asarray(indices_mask) != 0
    dense = lut_to_dense(sparse_to_dense(indices_nonzero, mask), lut, vector_axis)
    vec = np.asarray(lut).shape[-1]
    if vec > 1:
        mask = np.repeat(mask, vec, axis=int(vector_axis) % mask.ndim)
    return mask.astype(np.uint8), dense[mask]


def sparse_blockwise_shift_scale(data_mask, nonzero, scale, offset=None):
    """constexpr_sparse_blockwise_shift_scale: (mask, dequantised values) at the set positions."""
    mask = np.asarray(data_mask) != 0
    dense = blockwise_shift_scale(sparse_to_dense(nonzero, mask), scale, offset)
    return mask.astype(np.uint8), dense[mask]


# ---- ops -> values ---------------------------------------------------------

def _value(var):
    """The constant value of an input Var: its own, or the output of the constexpr op making it."""
    if var is None:
        return None
    if var.val is not None:
        return var.val
    producer = var.op
    if producer is None or not is_constant_op(producer):
        raise ValueError(f"input {var.name!r} of a constexpr op is not a constant")
    return _materialised(producer)[list(producer.outputs).index(var)]


def _materialised(op):
    """Decoded outputs of ``op``; kept on the op only when another constexpr op reads them.

    Kept, a chained input is decoded once; not kept otherwise, so a big weight is not held
    twice while a package loads.
    """
    vals = getattr(op, "_runtime_values", None)
    if vals is not None:
        return vals
    vals = _decode(op)
    if any(is_constant_op(child) for var in op.outputs for child in var.child_ops):
        op._runtime_values = vals
    return vals


def _decode(op):
    t, a = op.op_type, {name: _value(var) for name, var in op.inputs.items()}
    if t in ("const", "_const_symbolic"):
        return [op.outputs[0].val]
    if t == "constexpr_affine_dequantize":
        return [affine_dequantize(a["quantized_data"], a["zero_point"], a["scale"], a["axis"])]
    if t == "constexpr_blockwise_shift_scale":
        return [blockwise_shift_scale(a["data"], a["scale"], a.get("offset"))]
    if t == "constexpr_cast":
        return [np.asarray(a["source_val"]).astype(np.float32)]
    if t == "constexpr_lut_to_dense":
        if "shape" in a:  # iOS16: packed indices, a flat LUT and an explicit shape
            return [lut_to_dense_ios16(a["indices"], a["lut"], a["shape"])]
        return [lut_to_dense(a["indices"], a["lut"], a.get("vector_axis"))]
    if t == "constexpr_sparse_to_dense":
        if "shape" in a:  # iOS16: packed mask and an explicit shape
            return [sparse_to_dense_ios16(a["nonzero_data"], a["mask"], a["shape"])]
        return [sparse_to_dense(a["nonzero_data"], a["mask"])]
    if t == "constexpr_lut_to_sparse":
        return list(lut_to_sparse(a["indices_mask"], a["indices_nonzero_data"], a["lut"], a.get("vector_axis")))
    if t == "constexpr_sparse_blockwise_shift_scale":
        return list(sparse_blockwise_shift_scale(a["data_mask"], a["nonzero_data"], a["scale"], a.get("offset")))
    raise NotImplementedError(f"constant op {t!r} ({op.name!r}) has no decoder in runtime/mil/materialise.py")


# decoders whose every output is a new array of their own (not a view of an input)
_FRESH_DECODES = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale")


def materialise(op):
    """Values of a const/constexpr op's outputs, as a list, in compute form."""
    vals = _materialised(op)
    out = []
    for var, v in zip(op.outputs, vals):
        if op.op_type.startswith("constexpr_") and _declared(var) is types.fp16:
            # the package's weight is fp16 (already-fp16 values are unchanged); a fresh decode no other
            # constexpr op keeps is rounded where it is, not copied (0.7 s of a full-size int8 LM's load)
            own = op.op_type in _FRESH_DECODES and getattr(op, "_runtime_values", None) is None
            v = fp16.round_to_fp16(v, in_place=own)
        out.append(to_compute(v))
    return out


def _declared(var):
    t = var.sym_type
    return t.get_primitive() if types.is_tensor(t) else t


def is_constant_op(op):
    return op.op_type in ("const", "_const_symbolic") or op.op_type.startswith("constexpr_")
