"""Shape and layout ops: reshape, transpose, slicing, concat/split, pad, tile, ...

View-returning kernels (reshape, transpose, slices) return numpy views; the
executor never writes into a value it did not create itself, so sharing
memory is safe.
"""
import numpy as np

from ..registry import kernel
from ._util import axes_of, axis_of, flag, ints

IOS17 = 8  # ct.target.iOS17 as an int


@kernel("reshape", exact=True)
def reshape(a, op):
    """A 0 in ``shape`` copies a dimension of x. iOS15/16: only when len(shape) == rank(x), from the
    same position. iOS17+: aligned from the right (shape[i] <-> x.shape[i - len(shape) + rank]),
    and 1 where no dimension lines up: x (2, 50), shape [1, 0, -1, 0] -> (1, 1, 2, 50)."""
    x, shape = np.asarray(a["x"]), ints(a["shape"])
    if 0 in shape:
        if op.opset >= IOS17:
            lead = x.ndim - len(shape)
            shape = [(x.shape[i + lead] if i + lead >= 0 else 1) if s == 0 else s for i, s in enumerate(shape)]
        elif len(shape) == x.ndim:
            shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        else:
            raise ValueError(f"reshape {op.name!r}: a 0 in shape {shape} needs len(shape) == rank(x) = {x.ndim} "
                             "before iOS17")
    return np.reshape(x, shape)


@kernel("reshape_like", exact=True)
def reshape_like(a, op):
    x, refs = a["x"], a["ref_tensors"]
    begins, ends, masks = ints(a["begins"]), ints(a["ends"]), a["end_masks"]
    shape = []
    for r, b, e, m in zip(refs, begins, ends, np.atleast_1d(masks)):
        shape += list(np.shape(r)[b:] if m else np.shape(r)[b:e])
    return np.reshape(x, shape)


@kernel("transpose", exact=True)
def transpose(a, op):
    return np.transpose(a["x"], ints(a["perm"]))


@kernel("squeeze", exact=True)
def squeeze(a, op):
    """Listed axes whose size is not 1 are kept, as torch.squeeze does (the definition's words)."""
    x = np.asarray(a["x"])
    axes = axes_of(a, "axes", x.ndim)
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(ax for ax in axes if x.shape[ax] == 1))


@kernel("expand_dims", exact=True)
def expand_dims(a, op):
    return np.expand_dims(a["x"], tuple(ints(a["axes"])))


@kernel("flatten2d", exact=True)
def flatten2d(a, op):
    x = a["x"]
    ax = axis_of(a, "axis", x.ndim, 1)
    return x.reshape(int(np.prod(x.shape[:ax])), -1)


@kernel("concat", exact=True, fresh=True)
def concat(a, op):
    # scalars are concatenated as length-1 vectors (the converter emits this
    # when it assembles shapes/indices)
    vals = [np.atleast_1d(v) for v in a["values"]]
    ax = axis_of(a, "axis", vals[0].ndim)
    if flag(a, "interleave"):
        # interleave: chunks of each input alternate along the axis
        stacked = np.stack(vals, axis=ax + 1)
        shape = list(vals[0].shape)
        shape[ax] *= len(vals)
        return stacked.reshape(shape)
    return np.concatenate(vals, axis=ax)


@kernel("stack", exact=True)
def stack(a, op):
    vals = [np.asarray(v) for v in a["values"]]
    return np.stack(vals, axis=int(a.get("axis", 0)))


@kernel("split", exact=True)
def split(a, op):
    x = a["x"]
    ax = axis_of(a, "axis", x.ndim)
    sizes = a.get("split_sizes")
    if sizes is not None:
        cuts = np.cumsum(ints(sizes))[:-1]
    else:
        n = int(a["num_splits"])
        step = -(-x.shape[ax] // n)  # last chunk may be smaller
        cuts = list(range(step, x.shape[ax], step))
    return tuple(np.split(x, cuts, axis=ax))


@kernel("tile", exact=True, fresh=True)
def tile(a, op):
    return np.tile(a["x"], ints(a["reps"]))


@kernel("reverse", exact=True)
def reverse(a, op):
    x = a["x"]
    axes = axes_of(a, "axes", x.ndim)
    return np.flip(x, axis=axes)


def _index_slices(a, shape):
    """Python slices/ints for slice_by_index and slice_update."""
    rank = len(shape)
    begin, end = ints(a["begin"]), ints(a["end"])
    stride = ints(a["stride"]) if a.get("stride") is not None else [1] * rank
    bm = _mask(a, "begin_mask", rank)
    em = _mask(a, "end_mask", rank)
    sq = _mask(a, "squeeze_mask", rank)
    idx = []
    for i in range(rank):
        if sq[i]:
            b = begin[i] + shape[i] if begin[i] < 0 else begin[i]
            idx.append(b)
            continue
        idx.append(slice(None if bm[i] else begin[i], None if em[i] else end[i], stride[i]))
    return tuple(idx)


def _mask(a, key, rank):
    v = a.get(key)
    return [False] * rank if v is None else [bool(m) for m in np.atleast_1d(v)]


@kernel("slice_by_index", exact=True)
def slice_by_index(a, op):
    x = a["x"]
    return x[_index_slices(a, x.shape)]


@kernel("slice_by_size", exact=True)
def slice_by_size(a, op):
    x = a["x"]
    begin, size = ints(a["begin"]), ints(a["size"])
    idx = tuple(slice(b, None if s == -1 else b + s) for b, s in zip(begin, size))
    return x[idx]


@kernel("slice_update", exact_when=lambda op: True, fresh=True, in_place="x")
def slice_update(a, op):
    x = a["x"]
    out = x if op.in_place else x.copy()
    idx = _index_slices(a, x.shape)
    target = out[idx]
    out[idx] = np.reshape(a["update"], np.shape(target))
    return out


@kernel("pad", exact=True, fresh=True)
def pad(a, op):
    x = a["x"]
    p = ints(a["pad"])
    n = len(p) // 2
    widths = [(0, 0)] * (x.ndim - n) + [(p[2 * i], p[2 * i + 1]) for i in range(n)]
    mode = a.get("mode", "constant")
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=a.get("constant_val", 0.0))
    if mode == "reflect":
        return np.pad(x, widths, mode="reflect")
    if mode == "replicate":
        return np.pad(x, widths, mode="edge")
    raise ValueError(f"pad {op.name!r}: unknown mode {mode!r}")


@kernel("shape")
def shape(a, op):
    return np.array(np.shape(a["x"]), dtype=np.int32)


@kernel("range_1d")
def range_1d(a, op):
    start, end, step = (np.asarray(a[k]).item() for k in ("start", "end", "step"))
    return np.arange(start, end, step)


@kernel("fill", fresh=True)
def fill(a, op):
    return np.full(ints(a["shape"]), a.get("value", 0.0))


@kernel("fill_like", fresh=True)
def fill_like(a, op):
    return np.full(np.shape(a["ref_tensor"]), a.get("value", 0.0))


@kernel("band_part", exact=True)
def band_part(a, op):
    x = a["x"]
    lower, upper = int(a.get("lower", -1)), int(a.get("upper", -1))
    m, n = x.shape[-2:]
    i = np.arange(m)[:, None]
    j = np.arange(n)[None, :]
    keep = np.ones((m, n), bool)
    if lower >= 0:
        keep &= (i - j) <= lower
    if upper >= 0:
        keep &= (j - i) <= upper
    return np.where(keep, x, np.zeros((), x.dtype))


@kernel("cumsum")
def cumsum(a, op):
    x = a["x"]
    ax = axis_of(a, "axis", x.ndim)
    rev, excl = flag(a, "reverse"), flag(a, "exclusive")
    y = np.flip(x, ax) if rev else x
    out = np.cumsum(y, axis=ax, dtype=y.dtype)
    if excl:
        out = np.concatenate([np.zeros_like(np.take(out, [0], axis=ax)), np.delete(out, -1, axis=ax)], axis=ax)
    return np.flip(out, ax) if rev else out


@kernel("one_hot")
def one_hot(a, op):
    idx = np.asarray(a["indices"]).astype(np.int64)
    depth = int(a["one_hot_vector_size"])
    ax = int(a.get("axis", -1))
    on, off = a.get("on_value", 1), a.get("off_value", 0)
    hot = idx[..., None] == np.arange(depth)
    out = np.where(hot, on, off)
    return np.moveaxis(out, -1, ax if ax >= 0 else ax + out.ndim)


@kernel("non_zero")
def non_zero(a, op):
    return np.argwhere(np.asarray(a["x"]) != 0).astype(np.int32)


@kernel("argsort")
def argsort(a, op):
    x = a["x"]
    ax = axis_of(a, "axis", x.ndim, -1)
    asc = flag(a, "ascending")
    return np.argsort(x if asc else -x, axis=ax, kind="stable").astype(np.int32)


@kernel("topk", exact=True)
def topk(a, op):
    x = a["x"]
    k = int(a.get("k", 1))
    ax = axis_of(a, "axis", x.ndim, -1)
    asc = flag(a, "ascending")
    order = np.argsort(x if asc else -x, axis=ax, kind="stable")
    idx = np.take(order, np.arange(k), axis=ax)
    vals = np.take_along_axis(x, idx, axis=ax)
    if len(op.out_dtypes) == 1:  # iOS18 return_indices=False
        return vals
    return vals, idx.astype(np.int32)
