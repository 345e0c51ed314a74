"""The converted artifacts of one OUT, opened for generation: the generation config, the host arrays, the
tokenizer, and one layout's packages of one precision behind a single call, loaded on first use.

Paths come from `contract.artifacts`. Everything is checked before any model runs, so a bad
directory fails in a second, not after a prompt was encoded. A layout's steps implementation
(`generate.published_steps`, `generate.fast_steps`) calls the packages by their declared names
through `Packages`, which counts calls, seconds and the bytes that cross the model boundary.
"""
from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from contract import artifacts
from contract.defaults import COMPUTE_MODES, DEFAULT_LAYOUT, PRECISIONS
from contract.layout import component_names, options_from_metadata

from .errors import GenerationError

BACKENDS = ("auto", "coreml", "mil")


def open_out(out) -> Path:
    out = Path(out)
    if not out.is_dir():
        raise GenerationError(f"artifact directory {out} does not exist: run {artifacts.convert_hint(out)} "
                              f"or pass --out")
    return out


def read_config(out: Path) -> dict:
    try:
        return artifacts.read_generation_config(out)
    except artifacts.ArtifactError as exc:
        raise GenerationError(str(exc)) from None


def vae_rates(config: dict) -> tuple[list[int], list[int]]:
    try:
        return artifacts.vae_rates(config)
    except artifacts.ArtifactError as exc:
        raise GenerationError(str(exc)) from None


def _load_array(out: Path, name: str, shape: list[int]) -> np.ndarray:
    npy = artifacts.constants_dir(out) / f"{name}.npy"
    raw = artifacts.constants_bin_dir(out) / f"{name}.bin"
    try:
        if npy.is_file():
            array = np.load(npy, mmap_mode="r")  # embed_tokens is 300 MB at full size: read rows on demand
        elif raw.is_file():
            array = np.memmap(raw, dtype="<f2", mode="r").reshape(shape)
        else:
            raise GenerationError(f"{out} has neither constants/{name}.npy nor constants_bin/{name}.bin: "
                                  f"convert again ({artifacts.convert_hint(out)})")
    except (OSError, ValueError) as exc:
        raise GenerationError(f"cannot read constant {name} in {out} ({exc}): convert again") from None
    if list(array.shape) != list(shape):
        raise GenerationError(f"constant {name} in {out} has shape {list(array.shape)}, config.json says {shape}: "
                              f"convert again")
    return array


def load_constants(out: Path, config: dict) -> dict[str, np.ndarray]:
    """name -> array; the projections as float32 (small), embed_tokens as stored (rows read per text)."""
    shapes = {name: spec["shape"] for name, spec in config.get("arrays", {}).items()}
    missing = [n for n in artifacts.ARRAYS if n not in shapes]
    if missing:
        raise GenerationError(f"config.json in {out} does not describe {', '.join(missing)}: convert again")
    arrays = {name: _load_array(out, name, shapes[name]) for name in artifacts.ARRAYS}
    for name in artifacts.ARRAYS[1:]:
        arrays[name] = np.asarray(arrays[name], dtype=np.float32)
    return arrays


def tokenizer_path(out: Path) -> Path:
    path = artifacts.find_constant(out, "tokenizer.json")
    if path is None:
        raise GenerationError(f"{out} has no tokenizer.json in constants_bin/ or constants/: convert again")
    return path


def resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise GenerationError(f"unknown backend {backend!r}: use auto, coreml or mil")
    if backend == "auto":
        return "coreml" if sys.platform == "darwin" else "mil"
    if backend == "coreml" and sys.platform != "darwin":
        raise GenerationError("the coreml backend needs macOS: use --backend mil (the interpreter) or auto")
    return backend


def package_paths(out: Path, precision: str, components, backend: str, layout: str = DEFAULT_LAYOUT,
                  optional=()) -> dict:
    """component -> the package (or, for Core ML, the compiled model when convert made one); the
    `optional` components only where OUT has them."""
    if precision not in PRECISIONS:
        raise GenerationError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
    paths = {}
    for component in (*components, *optional):
        package = artifacts.package_path(out, precision, component, layout)
        compiled = artifacts.compiled_path(out, precision, component, layout)
        if backend == "coreml" and compiled.is_dir():
            paths[component] = compiled
        elif artifacts.is_package(package):
            paths[component] = package
        elif component not in optional:
            raise GenerationError(f"{out} has no {precision} {component} package: precision {precision} was not "
                                  f"converted there ({artifacts.convert_hint(out, precision)})")
    return paths


def layout_options(out: Path, precision: str, layout: str, config: dict) -> dict:
    """The settings a layout was converted with: the published layout's context is the generation
    config's; any other layout's options are recorded in its packages' metadata."""
    if layout == DEFAULT_LAYOUT:
        return {"max_context": config["max_context"]}
    from runtime.package_info import read

    for component in component_names(layout):
        path = artifacts.package_path(out, precision, component, layout)
        if artifacts.is_package(path):
            options = options_from_metadata(read(path).metadata)
            if options:
                return options
    raise GenerationError(f"{out} has no {precision} {layout} packages that record their settings: convert them "
                          f"({artifacts.convert_hint(out, precision)} --layout {layout})")


def _dtype_sizes(descs) -> dict[str, int]:
    return {d.name: np.dtype(d.dtype).itemsize for d in descs or () if d.dtype is not object}


class Packages:
    """A layout's packages (or functions of a package) behind one call, loaded on first use, with call
    counts, time, and bytes across the model boundary (inputs and outputs at the model's own dtypes:
    what Core ML receives and returns, fp16 for float tensors)."""

    def __init__(self, paths: dict[str, Path], backend: str, compute: str = "fp16"):
        if compute not in COMPUTE_MODES:
            raise GenerationError(f"unknown compute mode {compute!r}: use fp16 or fp32")
        self.paths, self.backend, self.compute = paths, backend, compute
        self._loaded: dict = {}
        self.calls: Counter = Counter()
        self.seconds: Counter = Counter()
        self.bytes: Counter = Counter()
        self.load_seconds = 0.0

    @staticmethod
    def key(component: str, function: str | None = None) -> str:
        """The name calls are counted under: the component, or component.function."""
        return component if function is None else f"{component}.{function}"

    def load(self, component: str, function: str | None = None):
        key = self.key(component, function)
        if key not in self._loaded:
            import runtime

            start = time.perf_counter()
            self._loaded[key] = runtime.load(str(self.paths[component]), backend=self.backend, function=function,
                                             compute=self.compute)
            self.load_seconds += time.perf_counter() - start
        return self._loaded[key]

    def new_state(self, component: str, function: str | None = None):
        """A fresh state (zeros) for a stateful package; every function declaring the same states takes it."""
        return self.load(component, function).new_state()

    def run(self, component: str, inputs: dict, function: str | None = None, state=None) -> dict[str, np.ndarray]:
        model, key = self.load(component, function), self.key(component, function)
        start = time.perf_counter()
        out = model.predict(inputs) if state is None else model.predict(inputs, state=state)
        self.seconds[key] += time.perf_counter() - start
        self.calls[key] += 1
        self.bytes[key] += self._boundary_bytes(model, inputs, out)
        return {name: np.asarray(value, dtype=np.float32) for name, value in out.items()}

    def __call__(self, component: str, state=None, **inputs) -> dict[str, np.ndarray]:
        return self.run(component, inputs, state=state)

    @staticmethod
    def _boundary_bytes(model, inputs: dict, outputs: dict) -> int:
        """Elements x the model's declared item size (the array's own when the model has no description)."""
        sizes = {**_dtype_sizes(model.inputs), **_dtype_sizes(model.outputs)}
        return sum(np.size(v) * sizes.get(name, np.asarray(v).itemsize)
                   for name, v in list(inputs.items()) + list(outputs.items()))
