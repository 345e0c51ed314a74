"""What a saved .mlpackage declares, read without running it (any OS): type, version, tensors, metadata.

The tensors are `runtime.describe.TensorDesc`s, the same the backends check inputs against, so
the spec check, the manifest and `predict` read one description.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import describe

DTYPE_NAMES = {np.dtype(np.float16): "fp16", np.dtype(np.float32): "fp32", np.dtype(np.float64): "fp64",
               np.dtype(np.int32): "int32", np.dtype(np.int8): "int8"}


@dataclass(frozen=True)
class PackageDesc:
    model_type: str                     # "mlProgram" for every package this toolkit makes
    spec_version: int                   # 8 = macOS 14 / iOS 17, 9 = macOS 15 / iOS 18
    inputs: tuple
    outputs: tuple
    states: tuple
    functions: tuple[str, ...] = ()     # a multifunction package's functions (empty: one function)
    descriptions: dict = field(default_factory=dict)   # tensor name -> its description
    metadata: dict = field(default_factory=dict)       # author, license, version, short description, user keys


def dtype_name(desc) -> str:
    return DTYPE_NAMES.get(np.dtype(desc.dtype), str(desc.dtype)) if desc.dtype is not object else desc.kind


def read(path, function_name=None) -> PackageDesc:
    """The declaration of the package at `path` (a FileNotFoundError or ValueError if it is not one)."""
    from .mil.loader import load_spec

    _, spec = load_spec(Path(path))
    inputs, outputs, states = describe.describe(spec, function_name)
    desc = spec.description
    functions = tuple(f.name for f in desc.functions)
    features = list(desc.input) + list(desc.output) + list(getattr(desc, "state", []))
    # a multifunction package: the descriptions of the chosen function (default: the default one), as
    # two functions may describe a tensor of the same name differently
    chosen = function_name or desc.defaultFunctionName
    for function in desc.functions:
        if function.name == chosen:
            features += list(function.input) + list(function.output) + list(function.state)
    meta = desc.metadata
    metadata = {"author": meta.author, "license": meta.license, "version": meta.versionString,
                "short_description": meta.shortDescription, **dict(meta.userDefined)}
    return PackageDesc(spec.WhichOneof("Type"), int(spec.specificationVersion), tuple(inputs), tuple(outputs),
                       tuple(states), functions, {f.name: f.shortDescription for f in features if f.shortDescription},
                       metadata)


def tensor_entry(desc) -> dict:
    """A TensorDesc as the manifest and the spec check print it: name, shape, dtype, flexible axes."""
    flexible = None
    if desc.ranges:
        flexible = {str(axis): [lo, hi] for axis, (lo, hi) in enumerate(desc.ranges) if lo != hi} or None
    return {"name": desc.name, "shape": [int(d) for d in desc.shape], "dtype": dtype_name(desc), "flexible": flexible}


def _tensors(package: PackageDesc) -> dict:
    return {"inputs": [tensor_entry(d) for d in package.inputs], "outputs": [tensor_entry(d) for d in package.outputs],
            **({"states": [tensor_entry(d) for d in package.states]} if package.states else {})}


def interface(path, function_name=None) -> dict:
    """The interface a saved package declares, as plain data (the manifest records it): its default
    function's (or `function_name`'s) tensors, and each function's of a multifunction package."""
    package = read(path, function_name)
    entry = {"model_type": package.model_type, "spec_version": package.spec_version, **_tensors(package)}
    if package.functions:
        entry["functions"] = {name: _tensors(read(path, name)) for name in package.functions}
    return entry
