"""The converted artifacts of one OUT, opened for generation: the generation config, the host arrays, the
tokenizer, and one layout's packages of one precision behind a single call, loaded on first use.

Paths come from `contract.artifacts`. Everything is checked before any model runs, so a bad
directory fails in a second, not after a prompt was encoded. A layout's steps implementation
(`generate.published_steps`) calls the packages by their declared names through `Packages`.
"""
from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from contract import artifacts
from contract.defaults import COMPUTE_MODES, DEFAULT_LAYOUT, PRECISIONS

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


class Packages:
    """A layout's packages behind one call, loaded on first use, with call counts and time."""

    def __init__(self, paths: dict[str, Path], backend: str, compute: str = "fp16"):
        if compute not in COMPUTE_MODES:
            raise GenerationError(f"unknown compute mode {compute!r}: use fp16 or fp32")
        self.paths, self.backend, self.compute = paths, backend, compute
        self._loaded: dict = {}
        self.calls: Counter = Counter()
        self.seconds: Counter = Counter()
        self.load_seconds = 0.0

    def load(self, component: str):
        if component not in self._loaded:
            import runtime

            start = time.perf_counter()
            self._loaded[component] = runtime.load(str(self.paths[component]), backend=self.backend,
                                                   compute=self.compute)
            self.load_seconds += time.perf_counter() - start
        return self._loaded[component]

    def new_state(self, component: str):
        """A fresh Core ML state of a stateful package (MLState, or the interpreter's)."""
        return self.load(component).new_state()

    def __call__(self, component: str, state=None, **inputs) -> dict[str, np.ndarray]:
        model = self.load(component)
        start = time.perf_counter()
        out = model.predict(inputs) if state is None else model.predict(inputs, state=state)
        self.seconds[component] += time.perf_counter() - start
        self.calls[component] += 1
        return {name: np.asarray(value, dtype=np.float32) for name, value in out.items()}
