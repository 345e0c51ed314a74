"""The converted artifacts `python -m convert` writes, found, checked and opened through `runtime`.

OUT/{fp16,int8,fp32}/<component>.mlpackage (and .mlmodelc beside it on macOS), OUT/constants/
(config.json + float32 .npy) or OUT/constants_bin/ (raw fp16 .bin + the tokenizer files).
Everything is checked before any model runs, so a bad directory fails in a second, not after
a prompt was encoded. Packages are loaded on first use: no prompt, no VAE encoder.
"""
from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from .errors import GenerationError

COMPONENTS = ("audio_vae_encoder", "audio_vae_decoder", "feat_encoder", "base_lm_step", "residual_lm_step",
              "locdit_step")
ARRAYS = ("embed_tokens", "enc_to_lm_proj_w", "enc_to_lm_proj_b", "lm_to_dit_proj_w", "lm_to_dit_proj_b",
          "res_to_dit_proj_w", "res_to_dit_proj_b")
PRECISIONS = ("fp16", "int8", "fp32")  # fp32: the reference build, for parity checks
BACKENDS = ("auto", "coreml", "mil")
CONVERT_HINT = "python -m convert --precision {precision} --out {out}"


def _find(out: Path, name: str) -> Path | None:
    """A constants file: constants/ first (exact fp32), then constants_bin/."""
    for sub in ("constants", "constants_bin"):
        if (out / sub / name).is_file():
            return out / sub / name
    return None


def read_config(out: Path) -> dict:
    path = _find(out, "config.json")
    if path is None:
        raise GenerationError(f"{out} has no constants/config.json: convert the model there first "
                              f"({CONVERT_HINT.format(precision='int8', out=out)})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise GenerationError(f"{path} is not valid JSON ({exc}): convert again") from None


def _load_array(out: Path, name: str, shape: list[int]) -> np.ndarray:
    npy, raw = out / "constants" / f"{name}.npy", out / "constants_bin" / f"{name}.bin"
    try:
        if npy.is_file():
            array = np.load(npy, mmap_mode="r")  # embed_tokens is 300 MB at full size: read rows on demand
        elif raw.is_file():
            array = np.memmap(raw, dtype="<f2", mode="r").reshape(shape)
        else:
            raise GenerationError(f"{out} has neither constants/{name}.npy nor constants_bin/{name}.bin: "
                                  f"convert again ({CONVERT_HINT.format(precision='int8', out=out)})")
    except (OSError, ValueError) as exc:
        raise GenerationError(f"cannot read constant {name} in {out} ({exc}): convert again") from None
    if list(array.shape) != list(shape):
        raise GenerationError(f"constant {name} in {out} has shape {list(array.shape)}, config.json says {shape}: "
                              f"convert again")
    return array


def load_constants(out: Path, config: dict) -> dict[str, np.ndarray]:
    """name -> array; the projections as float32 (small), embed_tokens as stored (rows read per text)."""
    shapes = {name: spec["shape"] for name, spec in config.get("arrays", {}).items()}
    missing = [n for n in ARRAYS if n not in shapes]
    if missing:
        raise GenerationError(f"config.json in {out} does not describe {', '.join(missing)}: convert again")
    arrays = {name: _load_array(out, name, shapes[name]) for name in ARRAYS}
    for name in ARRAYS[1:]:
        arrays[name] = np.asarray(arrays[name], dtype=np.float32)
    return arrays


def tokenizer_path(out: Path) -> Path:
    path = _find(out, "tokenizer.json")
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


def package_paths(out: Path, precision: str, backend: str) -> dict[str, Path]:
    """component -> the package (or, for Core ML, the compiled model when convert made one)."""
    if precision not in PRECISIONS:
        raise GenerationError(f"unknown precision {precision!r}: use fp16, int8 or fp32")
    paths = {}
    for component in COMPONENTS:
        package = out / precision / f"{component}.mlpackage"
        compiled = package.with_suffix(".mlmodelc")
        if backend == "coreml" and compiled.is_dir():
            paths[component] = compiled
        elif (package / "Manifest.json").is_file():
            paths[component] = package
        else:
            raise GenerationError(f"{out} has no {precision} {component} package: precision {precision} was not "
                                  f"converted there ({CONVERT_HINT.format(precision=precision, out=out)})")
    return paths


def open_artifacts(out) -> Path:
    out = Path(out)
    if not out.is_dir():
        raise GenerationError(f"artifact directory {out} does not exist: run "
                              f"{CONVERT_HINT.format(precision='int8', out=out)} or pass --artifacts")
    return out


class Models:
    """The six packages behind one call interface, loaded on first use, with call counts and time."""

    def __init__(self, paths: dict[str, Path], backend: str, interpreter_precision: str = "fp16"):
        self.paths, self.backend, self.interpreter_precision = paths, backend, interpreter_precision
        self._loaded: dict = {}
        self.calls: Counter = Counter()
        self.seconds: Counter = Counter()
        self.load_seconds = 0.0

    def load(self, component: str):
        if component not in self._loaded:
            import runtime

            start = time.perf_counter()
            self._loaded[component] = runtime.load(str(self.paths[component]), backend=self.backend,
                                                   precision=self.interpreter_precision)
            self.load_seconds += time.perf_counter() - start
        return self._loaded[component]

    def __call__(self, component: str, **inputs) -> dict[str, np.ndarray]:
        model = self.load(component)
        start = time.perf_counter()
        out = model.predict(inputs)
        self.seconds[component] += time.perf_counter() - start
        self.calls[component] += 1
        return {name: np.asarray(value, dtype=np.float32) for name, value in out.items()}


# voxcpm's 44.1 kHz AudioVAE (VoxCPM 1.5): used when the manifest does not say otherwise
DEFAULT_ENCODER_RATES = [2, 3, 6, 7, 7]
DEFAULT_DECODER_RATES = [7, 7, 6, 3, 2]


def vae_rates(out: Path, config: dict) -> tuple[list[int], list[int]]:
    """The VAE's encoder/decoder rates: from the checkpoint config recorded in OUT/manifest.json
    (constants/config.json keeps only their product, hop_length), else VoxCPM 1.5's own."""
    try:
        vae = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["source"]["config"]["audio_vae_config"]
        rates = list(vae["encoder_rates"]), list(vae["decoder_rates"])
    except (OSError, ValueError, KeyError, TypeError):
        rates = DEFAULT_ENCODER_RATES, DEFAULT_DECODER_RATES
    if any(int(np.prod(r)) != config["hop_length"] for r in rates):
        raise GenerationError(f"the VAE rates {rates} do not multiply to hop_length {config['hop_length']} "
                              f"in {out}: convert again")
    return rates
