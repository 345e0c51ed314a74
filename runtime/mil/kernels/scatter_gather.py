"""gather / scatter families.

Index semantics: indices may arrive as int16/uint16/int8 (the converter
narrows them); they are widened to int64 here. Negative indices wrap for
gather (documented range -D <= v < D) unless ``validate_indices`` is set on
an iOS17+ op; for iOS17+ scatter ops negative indices are out of bounds.
Out-of-bound indices raise IndexError instead of being undefined.

Scatter modes: update/add/sub/mul/div/max/min. Every scatter op (scatter,
scatter_along_axis, scatter_nd) defaults to "add", not "update" -- a trap.
"""
import numpy as np

from ..registry import kernel
from ._util import axis_of, flag, wrap_indices

IOS17 = 8

_AT = {
    "add": np.add.at,
    "sub": np.subtract.at,
    "mul": np.multiply.at,
    "div": np.divide.at,
    "max": np.maximum.at,
    "min": np.minimum.at,
}


def _update_mode(op) -> bool:
    """A scatter in mode "update" only places input values: exact in fp16 (the default is "add")."""
    mode = op.inputs.get("mode")
    return mode is not None and mode.val == "update"


def _gather_negatives_ok(a, op):
    return not (op.opset >= IOS17 and flag(a, "validate_indices"))


def _scatter_negatives_ok(op):
    return op.opset < IOS17


def _apply(out, index, updates, mode, op):
    if mode == "update":
        out[index] = updates
    elif mode in _AT:
        _AT[mode](out, index, updates)
    else:
        raise ValueError(f"{op.op_type} {op.name!r}: unknown scatter mode {mode!r}")
    return out


@kernel("gather", exact=True)
def gather(a, op):
    x = a["x"]
    ax = axis_of(a, "axis", x.ndim)
    bd = int(a.get("batch_dims", 0))
    idx = wrap_indices(a["indices"], x.shape[ax], op, _gather_negatives_ok(a, op))
    if bd == 0:
        return np.take(x, idx, axis=ax)
    # batch_dims: the first bd dims of x and indices are matched pairwise
    batch = x.shape[:bd]
    xb = x.reshape((-1,) + x.shape[bd:])
    ib = idx.reshape((-1,) + idx.shape[bd:])
    parts = [np.take(xb[i], ib[i], axis=ax - bd) for i in range(xb.shape[0])]
    out = np.stack(parts)
    return out.reshape(batch + out.shape[1:])


@kernel("gather_along_axis", exact=True)
def gather_along_axis(a, op):
    x = a["x"]
    ax = axis_of(a, "axis", x.ndim)
    idx = wrap_indices(a["indices"], x.shape[ax], op, _gather_negatives_ok(a, op))
    return np.take_along_axis(x, idx, axis=ax)


@kernel("gather_nd", exact=True)
def gather_nd(a, op):
    x = a["x"]
    bd = int(a.get("batch_dims", 0))
    idx = np.asarray(a["indices"]).astype(np.int64)
    if bd == 0:
        return x[_nd_index(idx, x.shape, op, _gather_negatives_ok(a, op))]
    xb = x.reshape((-1,) + x.shape[bd:])
    ib = idx.reshape((-1,) + idx.shape[bd:])
    parts = [xb[i][_nd_index(ib[i], xb.shape[1:], op, _gather_negatives_ok(a, op))] for i in range(xb.shape[0])]
    out = np.stack(parts)
    return out.reshape(x.shape[:bd] + out.shape[1:])


def _nd_index(idx, shape, op, negatives_ok):
    k = idx.shape[-1]
    return tuple(wrap_indices(idx[..., i], shape[i], op, negatives_ok) for i in range(k))


@kernel("scatter", exact_when=_update_mode, fresh=True, in_place="data")
def scatter(a, op):
    data = a["data"]
    ax = axis_of(a, "axis", data.ndim)
    out = data if op.in_place else data.copy()
    idx = wrap_indices(a["indices"], data.shape[ax], op, _scatter_negatives_ok(op))
    view = np.moveaxis(out, ax, 0)  # a view: writes land in out
    upd = np.moveaxis(np.asarray(a["updates"]), ax, 0)
    _apply(view, idx, upd, a.get("mode", "add"), op)
    return out


@kernel("scatter_along_axis", exact_when=_update_mode, fresh=True, in_place="data")
def scatter_along_axis(a, op):
    data = a["data"]
    ax = axis_of(a, "axis", data.ndim)
    out = data if op.in_place else data.copy()
    upd = np.asarray(a["updates"])
    idx = wrap_indices(a["indices"], data.shape[ax], op, _scatter_negatives_ok(op))
    grid = list(np.indices(idx.shape, sparse=True))
    grid[ax] = idx
    return _apply(out, tuple(grid), upd, a.get("mode", "add"), op)


@kernel("scatter_nd", exact_when=_update_mode, fresh=True, in_place="data")
def scatter_nd(a, op):
    data = a["data"]
    out = data if op.in_place else data.copy()
    idx = np.asarray(a["indices"]).astype(np.int64)
    index = _nd_index(idx, data.shape, op, _scatter_negatives_ok(op))
    return _apply(out, index, np.asarray(a["updates"]), a.get("mode", "add"), op)
