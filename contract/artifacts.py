"""Where `python -m convert` puts every artifact under OUT, and how the others read them back.

    OUT/<precision>/<component>.mlpackage   fp16, int8 (shipped), fp32 (reference build); .mlmodelc beside on macOS
    OUT/constants/                          config.json (the generation config) + float32 .npy arrays
    OUT/constants_bin/                      the same arrays as raw little-endian fp16 + the tokenizer files
    OUT/manifest.json                       provenance: sources, hashes, tool versions, every artifact
    OUT/validation/                         python -m validate's report

Readers raise `ArtifactError` (one line: the problem and the fix); each command wraps it in its own
error type. `max_context` and the VAE rates come from the generation config and nowhere else.
"""
from __future__ import annotations

import json
from pathlib import Path

from .defaults import DEFAULT_LAYOUT, PROMPT_CONTEXT_PATCHES
from .sizes import VOXCPM15_DECODER_RATES, VOXCPM15_ENCODER_RATES

CONSTANTS, CONSTANTS_BIN = "constants", "constants_bin"
MANIFEST = "manifest.json"
REPORT_DIR = "validation"
GENERATION_CONFIG = "config.json"
# the host-side arrays: text embeddings and the three projections, [out, in] like torch.nn.Linear
PROJECTIONS = ("enc_to_lm_proj", "lm_to_dit_proj", "res_to_dit_proj")
ARRAYS = ("embed_tokens", *(f"{p}_{part}" for p in PROJECTIONS for part in ("w", "b")))
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
CONVERT_HINT = "python -m convert --precision {precision} --out {out}"


class ArtifactError(ValueError):
    """OUT is missing something or holds something unreadable; one line naming the problem and the fix."""


def convert_hint(out, precision: str = "int8") -> str:
    return CONVERT_HINT.format(precision=precision, out=out)


# ----------------------------------------------------------------------------- paths
def precision_dir(out, precision: str, layout: str = DEFAULT_LAYOUT) -> Path:
    """OUT/<precision> for the published layout, OUT/<precision>-<layout> for any other."""
    return Path(out) / (precision if layout == DEFAULT_LAYOUT else f"{precision}-{layout}")


def package_path(out, precision: str, component: str, layout: str = DEFAULT_LAYOUT) -> Path:
    return precision_dir(out, precision, layout) / f"{component}.mlpackage"


def compiled_path(out, precision: str, component: str, layout: str = DEFAULT_LAYOUT) -> Path:
    return package_path(out, precision, component, layout).with_suffix(".mlmodelc")


def constants_dir(out) -> Path:
    return Path(out) / CONSTANTS


def constants_bin_dir(out) -> Path:
    return Path(out) / CONSTANTS_BIN


def manifest_path(out) -> Path:
    return Path(out) / MANIFEST


def report_dir(out) -> Path:
    return Path(out) / REPORT_DIR


def artifact_key(precision: str, component: str, layout: str = DEFAULT_LAYOUT) -> str:
    """The artifact's key in the manifest: its path under OUT without the suffix."""
    return f"{precision_dir('', precision, layout).as_posix()}/{component}"


def is_package(path: Path) -> bool:
    return (Path(path) / "Manifest.json").is_file()


def converted(out, precision: str, components, layout: str = DEFAULT_LAYOUT) -> list[str]:
    """Which of `components` OUT holds as packages of `precision`."""
    return [c for c in components if is_package(package_path(out, precision, c, layout))]


# ----------------------------------------------------------------------------- readers
def read_manifest(out) -> dict | None:
    """OUT/manifest.json, or None when there is none (a conversion this toolkit did not make)."""
    path = manifest_path(out)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path} is unreadable ({exc}): convert again ({convert_hint(out)})") from None


def find_constant(out, name: str) -> Path | None:
    """A constants file: constants/ first (exact fp32), then constants_bin/."""
    for directory in (constants_dir(out), constants_bin_dir(out)):
        if (directory / name).is_file():
            return directory / name
    return None


def has_generation_config(out) -> bool:
    return find_constant(out, GENERATION_CONFIG) is not None


def read_generation_config(out) -> dict:
    path = find_constant(out, GENERATION_CONFIG)
    if path is None:
        raise ArtifactError(f"{out} has no constants/config.json: convert the model there first ({convert_hint(out)})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}): convert again") from None


def max_context(config: dict) -> int:
    """The positions the converted LM steps hold (the generation config's `max_context`)."""
    return int(config["max_context"])


def prompt_context_patches(config: dict) -> int:
    """Prompt patches decoded before the generated ones; configs written before it was recorded get
    the default."""
    return int(config.get("prompt_context_patches", PROMPT_CONTEXT_PATCHES))


def vae_rates(config: dict) -> tuple[list[int], list[int]]:
    """(encoder rates, decoder rates) of the AudioVAE, from the generation config.

    Configs written before the rates were recorded hold only their product (`hop_length`): those
    get VoxCPM 1.5's own rates, which must multiply to it."""
    encoder = list(config.get("vae_encoder_rates") or VOXCPM15_ENCODER_RATES)
    decoder = list(config.get("vae_decoder_rates") or VOXCPM15_DECODER_RATES)
    for rates in (encoder, decoder):
        product = 1
        for r in rates:
            product *= int(r)
        if product != config["hop_length"]:
            raise ArtifactError(f"the VAE rates {rates} do not multiply to hop_length {config['hop_length']} in the "
                                f"generation config: convert again")
    return encoder, decoder
