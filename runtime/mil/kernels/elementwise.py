"""Elementwise ops: binary math/comparison/logic, unary math, activations, cast, select."""
import math

import numpy as np

from ..registry import kernel
from ._util import F32, f32

try:  # erf for arrays: numpy has none; torch is an optional fast path
    import torch as _torch
except ImportError:  # pragma: no cover
    _torch = None

# ---- binary -----------------------------------------------------------------

_BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "equal": np.equal,
    "not_equal": np.not_equal,
    "less": np.less,
    "less_equal": np.less_equal,
    "greater": np.greater,
    "greater_equal": np.greater_equal,
    "logical_and": np.logical_and,
    "logical_or": np.logical_or,
    "logical_xor": np.logical_xor,
    "floor_div": np.floor_divide,
    "mod": np.mod,  # Python semantics (sign of divisor), as value_inference
}


def _binary(fn):
    return lambda a, op: fn(a["x"], a["y"])


_SELECTING_BINARY = {"maximum", "minimum"}     # pick one input's value: exact in fp16
_FRESH_BINARY = {"add", "sub", "mul"}           # always a new array (in-place writes into it are safe)

for _name, _fn in _BINARY.items():
    kernel(_name, exact=_name in _SELECTING_BINARY, fresh=_name in _FRESH_BINARY)(_binary(_fn))


@kernel("real_div", fresh=True)
def real_div(a, op):
    x, y = a["x"], a["y"]
    out = np.true_divide(x, y)
    # int / int: MIL keeps the int type; the executor's cast truncates,
    # matching value_inference's cast of the true quotient.
    return out


@kernel("pow")
def pow_(a, op):
    x, y = a["x"], a["y"]
    if np.asarray(x).dtype.kind == "f" or np.asarray(y).dtype.kind == "f":
        return np.power(f32(x), f32(y))
    return np.power(x, y)


# ---- unary ------------------------------------------------------------------

_UNARY = {
    "abs": np.abs,
    "acos": np.arccos,
    "asin": np.arcsin,
    "atan": np.arctan,
    "atanh": np.arctanh,
    "ceil": np.ceil,
    "cos": np.cos,
    "cosh": np.cosh,
    "exp": np.exp,
    "exp2": np.exp2,
    "floor": np.floor,
    "logical_not": np.logical_not,
    "sign": np.sign,
    "sin": np.sin,
    "sinh": np.sinh,
    "sqrt": np.sqrt,
    "square": np.square,
    "tan": np.tan,
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6),
    "sigmoid": lambda x: _sigmoid(x),
    "silu": lambda x: x * _sigmoid(x),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "softplus": lambda x: np.logaddexp(0, x),
    "identity": lambda x: x,
}


def _sigmoid(x):
    x = f32(x)
    # split by sign so exp never overflows
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _unary(fn):
    return lambda a, op: fn(a["x"])


# outputs that are input values or exactly representable ones: no second fp16 rounding
_EXACT_UNARY = {"relu", "abs", "floor", "ceil", "sign", "identity"}

for _name, _fn in _UNARY.items():
    kernel(_name, exact=_name in _EXACT_UNARY)(_unary(_fn))


@kernel("round", exact=True)
def round_(a, op):
    # half to even, like value_inference (np.round) and torch.round
    return np.round(a["x"])


@kernel("erf")
def erf(a, op):
    return _erf(f32(a["x"]))


def _erf(x):
    if _torch is not None:
        return _torch.erf(_torch.from_numpy(np.ascontiguousarray(x, dtype=F32))).numpy()
    return np.vectorize(math.erf, otypes=[F32])(x)


@kernel("log")
def log(a, op):
    return np.log(f32(a["x"]) + F32(a.get("epsilon", 0.0)))


@kernel("rsqrt")
def rsqrt(a, op):
    # epsilon is added before the root (default 1e-12), not ignored
    return 1.0 / np.sqrt(f32(a["x"]) + F32(a.get("epsilon", 1e-12)))


@kernel("inverse")
def inverse(a, op):
    return 1.0 / (f32(a["x"]) + F32(a.get("epsilon", 1e-4)))


@kernel("clip", exact=True)
def clip(a, op):
    return np.clip(a["x"], a["alpha"], a["beta"])


@kernel("threshold")
def threshold(a, op):
    return np.maximum(a["x"], a["alpha"])


@kernel("cast")
def cast(a, op):
    # the executor casts to the declared output dtype; bool -> number and
    # float -> int (truncation, like numpy astype in value_inference) happen there
    return np.asarray(a["x"])


@kernel("select", exact=True, fresh=True)
def select(a, op):
    return np.where(a["cond"], a["a"], a["b"])


# ---- activations with parameters --------------------------------------------

@kernel("gelu")
def gelu(a, op):
    x, mode = f32(a["x"]), a.get("mode", "EXACT")
    if mode == "EXACT":
        return 0.5 * x * (1 + _erf(x / np.sqrt(F32(2))))
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1 + np.tanh(np.sqrt(F32(2 / np.pi)) * (x + F32(0.044715) * x**3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x * _sigmoid(F32(1.702) * x)
    raise ValueError(f"gelu {op.name!r}: unknown mode {mode!r}")


def _per_channel(v, x):
    """Broadcast a per-channel parameter [C] along axis -3 (MIL convention)."""
    v = np.asarray(v, dtype=F32)
    if v.ndim == 0 or v.size == 1:
        return v.reshape(())
    return v.reshape((-1,) + (1,) * (x.ndim - 2))


@kernel("elu")
def elu(a, op):
    x, al = f32(a["x"]), F32(a.get("alpha", 1.0))
    return np.where(x > 0, x, al * (np.exp(np.minimum(x, 0)) - 1))


@kernel("leaky_relu")
def leaky_relu(a, op):
    x = f32(a["x"])
    return np.where(x >= 0, x, F32(a.get("alpha", 0.01)) * x)


@kernel("prelu")
def prelu(a, op):
    x = f32(a["x"])
    return np.where(x >= 0, x, _per_channel(a["alpha"], x) * x)


@kernel("linear_activation")
def linear_activation(a, op):
    return F32(a["alpha"]) * f32(a["x"]) + F32(a.get("beta", 0.0))


@kernel("scaled_tanh")
def scaled_tanh(a, op):
    return F32(a.get("alpha", 1.0)) * np.tanh(F32(a.get("beta", 1.0)) * f32(a["x"]))


@kernel("sigmoid_hard")
def sigmoid_hard(a, op):
    return np.clip(F32(a.get("alpha", 0.2)) * f32(a["x"]) + F32(a.get("beta", 0.5)), 0, 1)


@kernel("clamped_relu")
def clamped_relu(a, op):
    x = f32(a["x"])
    return np.minimum(np.maximum(x, 0), F32(a.get("beta", 6.0))) + F32(a.get("alpha", 0.0)) * np.minimum(x, 0)


@kernel("thresholded_relu")
def thresholded_relu(a, op):
    x = f32(a["x"])
    return np.where(x >= F32(a.get("alpha", 1.0)), x, 0).astype(F32)  # x itself at x == alpha (the definition)


@kernel("softplus_parametric")
def softplus_parametric(a, op):
    x = f32(a["x"])
    return _per_channel(a["alpha"], x) * np.logaddexp(0, _per_channel(a["beta"], x) * x)
