"""Model I/O descriptions read from the Core ML spec, and input checking.

Both backends use these, so an input that Core ML would reject is rejected
the same way (``InputError``) by the interpreter, before anything runs.
"""
from dataclasses import dataclass, field

import numpy as np

from . import fp16
from .errors import InputError

# ArrayFeatureType.ArrayDataType values (FeatureTypes.proto)
_ARRAY_DTYPES = {65568: np.float32, 65552: np.float16, 65600: np.float64, 131104: np.int32, 131080: np.int8}


@dataclass(frozen=True)
class TensorDesc:
    """One input, output or state of a model.

    ``shape`` is the default shape; ``ranges`` is a per-dimension list of
    (lower, upper) bounds (upper None = unbounded) when the input has a
    RangeDim-flexible shape; ``enumerated`` lists the allowed shapes when
    it has enumerated shapes. A fixed shape has neither.
    """

    name: str
    shape: tuple
    dtype: type
    ranges: tuple = None
    enumerated: tuple = None
    kind: str = "tensor"
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def flexible(self):
        return self.ranges is not None or self.enumerated is not None

    def expected(self):
        """Human-readable description of the accepted shapes."""
        if self.enumerated:
            return "one of shapes " + ", ".join(str(s) for s in self.enumerated)
        if self.ranges:
            dims = [str(lo) if lo == hi else f"{lo}..{'inf' if hi is None else hi}" for lo, hi in self.ranges]
            return f"shape ({', '.join(dims)})"
        return f"shape {self.shape}"


def _array_desc(name, arr, kind="tensor"):
    dtype = _ARRAY_DTYPES.get(arr.dataType)
    if dtype is None:
        raise ValueError(f"{kind} {name!r}: unsupported array data type {arr.dataType}")
    shape = tuple(int(d) for d in arr.shape)
    ranges = enumerated = None
    which = arr.WhichOneof("ShapeFlexibility")
    if which == "shapeRange":
        ranges = tuple((int(r.lowerBound), None if r.upperBound < 0 else int(r.upperBound)) for r in arr.shapeRange.sizeRanges)
    elif which == "enumeratedShapes":
        enumerated = tuple(tuple(int(d) for d in s.shape) for s in arr.enumeratedShapes.shapes)
    return TensorDesc(name, shape, dtype, ranges, enumerated, kind)


def feature_desc(feature, kind):
    """TensorDesc for a FeatureDescription (multiArray or state)."""
    which = feature.type.WhichOneof("Type")
    if which == "multiArrayType":
        return _array_desc(feature.name, feature.type.multiArrayType, kind)
    if which == "stateType":
        return _array_desc(feature.name, feature.type.stateType.arrayType, "state")
    # images, dictionaries... are not produced by our converters
    return TensorDesc(feature.name, (), object, kind=which)


def describe(spec, function_name=None):
    """(inputs, outputs, states) lists of TensorDesc for one function."""
    desc = spec.description
    if function_name is not None and len(desc.functions):
        matches = [f for f in desc.functions if f.name == function_name]
        if not matches:
            names = [f.name for f in desc.functions]
            raise ValueError(f"function {function_name!r} not in model; it has {names}")
        desc = matches[0]
    inputs = [feature_desc(f, "input") for f in desc.input]
    outputs = [feature_desc(f, "output") for f in desc.output]
    states = [feature_desc(f, "state") for f in desc.state]
    return inputs, outputs, states


def default_function(spec):
    """Name of the default function of a (multifunction) spec, or None."""
    desc = spec.description
    if len(desc.functions):
        return desc.defaultFunctionName or desc.functions[0].name
    return None


def check_inputs(inputs, descs, cast=True, strict=False):
    """Validate and convert the caller's inputs; returns name -> ndarray.

    Conversions are Core ML's (runtime/INPUTS.md gives the rules and their evidence): a float
    array for an int32 input is truncated toward zero, an integer array for a float input is
    rounded to the nearest float, float widths round to nearest even, and a scalar stands for
    a shape-(1,) input. What Core ML leaves undefined (NaN, inf or out-of-range values for an
    int32 input) is refused. ``strict=True`` keeps the toolkit's own check instead: float inputs
    take float arrays and int32 inputs integer arrays, nothing else. ``cast=False`` validates
    and reshapes without converting the dtype (for a backend that copies the inputs anyway).
    """
    if not isinstance(inputs, dict):
        raise InputError(f"inputs must be a dict name -> array, got {type(inputs).__name__}")
    by_name = {d.name: d for d in descs}
    unknown = sorted(set(inputs) - set(by_name))
    if unknown:
        raise InputError(f"unknown input(s) {unknown}; the model takes {sorted(by_name)}")
    missing = [n for n in by_name if n not in inputs]
    if missing:
        raise InputError(f"missing input(s) {missing}; expected {[by_name[n].expected() for n in missing]}")
    return {name: _check_one(_as_array(inputs[name], name), by_name[name], cast, strict) for name in by_name}


def _as_array(value, name):
    """numpy view of what a caller may pass (arrays, torch tensors, lists, Python scalars)."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # torch.Tensor, without importing torch
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"input {name!r}: not an array ({type(value).__name__}): {exc}") from None
    return arr



def _check_one(arr, desc, cast, strict):
    want = np.dtype(desc.dtype)
    if arr.dtype.kind not in "fiub":
        raise InputError(f"input {desc.name!r}: expected a numeric array ({want.name}), got {arr.dtype.name}")
    if strict and want.kind == "f" and arr.dtype.kind != "f":
        raise InputError(f"input {desc.name!r}: expected a float array ({want.name}), got {arr.dtype.name}")
    if strict and want.kind in "iu" and arr.dtype.kind not in "iub":
        raise InputError(f"input {desc.name!r}: expected an integer array ({want.name}), got {arr.dtype.name}")
    if arr.ndim == 0 and not strict and _accepts(desc, (1,)):
        arr = arr.reshape(1)  # a scalar for a shape-(1,) input, as coremltools' own callers pass it
    _check_shape(arr.shape, desc)
    if want.kind in "iu":
        _check_int_range(arr, want, desc.name)
    if not cast:
        return arr
    if want.kind in "iu" and arr.dtype.kind == "f":
        return np.trunc(arr).astype(want)  # toward zero (Core ML's float -> int conversion)
    return fp16.cast(arr, want)


def _check_int_range(arr, want, name):
    """Refuse values an int32 cannot hold (Core ML leaves their conversion undefined)."""
    if arr.size == 0 or arr.dtype.kind == "b":
        return
    info = np.iinfo(want)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise InputError(f"input {name!r}: {want.name} input given non-finite values (NaN or inf)")
        lo, hi = np.trunc(arr.min()), np.trunc(arr.max())
    else:
        lo, hi = arr.min(), arr.max()
    if lo < info.min or hi > info.max:
        bad = lo if lo < info.min else hi
        raise InputError(f"input {name!r}: value {bad} is outside the {want.name} range [{info.min}, {info.max}]")


def _accepts(desc, shape):
    if desc.enumerated:
        return tuple(shape) in desc.enumerated
    if desc.ranges:
        return len(shape) == len(desc.ranges) and all(lo <= s and (hi is None or s <= hi)
                                                      for s, (lo, hi) in zip(shape, desc.ranges))
    return tuple(shape) == tuple(desc.shape)


def _check_shape(shape, desc):
    if not _accepts(desc, shape):
        rank = len(desc.ranges) if desc.ranges else len(desc.enumerated[0]) if desc.enumerated else len(desc.shape)
        why = f"rank {len(shape)} != {rank}" if len(shape) != rank else "shape out of range"
        raise InputError(f"input {desc.name!r}: got shape {tuple(shape)} ({why}); expected {desc.expected()}")
