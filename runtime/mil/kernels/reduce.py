"""reduce_* family and argmax/argmin."""
import numpy as np

from ..registry import kernel
from ._util import F32, axes_of, axis_of, f32, flag


def _reduce(fn):
    def run(a, op):
        x = np.asarray(a["x"])
        axes = axes_of(a, "axes", x.ndim)  # None = all axes
        return fn(x, axes, flag(a, "keep_dims"))

    return run


def _lse(x, ax, kd):
    x = f32(x)
    m = np.max(x, axis=ax, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=ax, keepdims=True)) + m
    return out if kd else np.squeeze(out, axis=ax)


_REDUCE = {
    "reduce_sum": lambda x, ax, kd: np.sum(x, axis=ax, keepdims=kd, dtype=x.dtype),
    "reduce_mean": lambda x, ax, kd: np.mean(f32(x), axis=ax, keepdims=kd),
    "reduce_prod": lambda x, ax, kd: np.prod(x, axis=ax, keepdims=kd, dtype=x.dtype),
    "reduce_max": lambda x, ax, kd: np.max(x, axis=ax, keepdims=kd),
    "reduce_min": lambda x, ax, kd: np.min(x, axis=ax, keepdims=kd),
    "reduce_l1_norm": lambda x, ax, kd: np.sum(np.abs(x), axis=ax, keepdims=kd),
    "reduce_l2_norm": lambda x, ax, kd: np.sqrt(np.sum(np.square(f32(x)), axis=ax, keepdims=kd)),
    "reduce_sum_square": lambda x, ax, kd: np.sum(np.square(x), axis=ax, keepdims=kd),
    "reduce_log_sum": lambda x, ax, kd: np.log(np.sum(f32(x), axis=ax, keepdims=kd)),
    "reduce_log_sum_exp": _lse,
}

for _name, _fn in _REDUCE.items():
    kernel(_name, exact=_name in ("reduce_max", "reduce_min"))(_reduce(_fn))  # max/min pick an input value


def _arg(fn):
    def run(a, op):
        x = np.asarray(a["x"])
        ax = axis_of(a, "axis", x.ndim, -1)
        out = fn(x, axis=ax)
        return np.expand_dims(out, ax).astype(np.int32) if flag(a, "keep_dims") else out.astype(np.int32)

    return run


kernel("reduce_argmax")(_arg(np.argmax))
kernel("reduce_argmin")(_arg(np.argmin))
_ = F32
