"""Small helpers shared by kernels."""
import numpy as np

F32 = np.float32


def f32(x):
    """View/convert a float array to fp32 (no copy when already fp32)."""
    x = np.asarray(x)
    return x if x.dtype == F32 or x.dtype.kind != "f" else x.astype(F32)


def axis_of(a, key, rank, default=0):
    ax = int(a.get(key, default))
    return ax + rank if ax < 0 else ax


def axes_of(a, key, rank):
    """Tuple of non-negative axes, or None when the input is absent."""
    v = a.get(key)
    if v is None:
        return None
    return tuple(int(x) % rank for x in np.atleast_1d(v))


def flag(a, key, default=False):
    v = a.get(key, default)
    return bool(np.asarray(v).item()) if v is not None else default


def ints(v):
    return [int(x) for x in np.atleast_1d(v)]


def wrap_indices(indices, size, op, allow_negative=True):
    """Bounds-check indices along an axis of length ``size``.

    Core ML leaves out-of-bound indices undefined; an interpreter that is
    meant to catch conversion errors must be loud about them instead.
    Negative indices wrap (iOS15/16 semantics, and gather documents
    -D <= v < D); where the op forbids them (iOS17+ scatter, or
    validate_indices on iOS17+ gather) they are errors.
    """
    idx = np.asarray(indices).astype(np.int64)
    if idx.size == 0:
        return idx
    lo = -size if allow_negative else 0
    if idx.min() < lo or idx.max() >= size:
        bad = idx[(idx < lo) | (idx >= size)]
        raise IndexError(
            f"{op.op_type} {op.name!r}: index {int(bad.flat[0])} out of bounds for axis of size {size}"
            + ("" if allow_negative else " (negative indices are out of bounds here)")
        )
    return np.where(idx < 0, idx + size, idx)
