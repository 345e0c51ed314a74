"""A LoRA adapter's settings (voxcpm's `LoRAConfig` fields): from the training YAML, a JSON, or the adapter's keys.

voxcpm's fine-tuning script saves only the weights; r, alpha and the adapted modules live in the
training YAML's `lora:` section (beside `pretrained_path` and `sample_rate`, which say what base
it was trained on). `read_config` takes that YAML, or a YAML/JSON holding the fields themselves
(or under `lora:` / `lora_config:`), and refuses unknown fields: a misspelt `alpah` would
otherwise silently give the default. `infer_config` reads r and the modules from the keys; alpha
cannot be read from the weights, so it is voxcpm's default and `alpha_from_default` says so.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .loading import CheckpointError

# voxcpm's `VoxCPMModel._apply_lora`: which model parts each switch adapts (Linear layers matched by
# their attribute name); the projections are top-level attributes named in `target_proj_modules`
LM_PARTS = ("base_lm", "residual_lm")
DIT_PART = "feat_decoder.estimator"
CONFIG_HINT = "pass the training YAML (its lora: section) or a JSON of voxcpm's LoRAConfig fields as LORA_CONFIG"


class LoRAError(CheckpointError):
    """An adapter or adapter config that cannot be used; one line naming the problem and the fix."""


@dataclass(frozen=True)
class LoRASettings:
    """The resolved LoRAConfig fields, where they came from, and what the config says of the base."""

    fields: dict                          # every LoRAConfig field (r, alpha, dropout, enable_*, target_*)
    source: str                           # the config file, or "the adapter's keys"
    from_keys: bool = False               # no config: r and the modules were read from the keys
    alpha_from_default: bool = False      # alpha is voxcpm's default, not the trainer's
    base_hints: dict = field(default_factory=dict)   # pretrained_path / sample_rate of the training config

    @property
    def r(self) -> int:
        return int(self.fields["r"])

    @property
    def alpha(self) -> float:
        return float(self.fields["alpha"])

    @property
    def scale(self) -> float:
        """What LoRALinear multiplies B·A by."""
        return self.alpha / self.r

    def lora_config(self):
        return lora_config_class()(**self.fields)


def lora_config_class():
    from .compat import import_voxcpm

    import_voxcpm()
    from voxcpm.model.voxcpm import LoRAConfig

    return LoRAConfig


def part_of(module: str) -> str | None:
    """"lm", "dit" or "proj" (the LoRAConfig switch that may adapt `module`), or None. `enable_proj` adapts
    top-level attributes of the model (the three projections by default)."""
    if module.split(".")[0] in LM_PARTS:
        return "lm"
    if module.startswith(DIT_PART + "."):
        return "dit"
    return "proj" if "." not in module else None


# ----------------------------------------------------------------------------- from a file
def _parse(path: Path) -> dict:
    import yaml  # PyYAML: a dependency of huggingface_hub and transformers

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LoRAError(f"cannot read LoRA config {path} ({exc.strerror or exc}): {CONFIG_HINT}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        reason = " ".join(str(exc).split())[:160]
        raise LoRAError(f"LoRA config {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({reason}): "
                        f"fix it, or {CONFIG_HINT}") from None
    if not isinstance(data, dict):
        raise LoRAError(f"LoRA config {path} holds no mapping of settings: {CONFIG_HINT}")
    return data


def _section(data: dict, path: Path) -> dict:
    """The LoRAConfig fields: the `lora:` section of a training YAML, `lora_config:`, or the mapping itself."""
    known = set(lora_config_class().model_fields)
    for key in ("lora", "lora_config"):
        if key in data:
            if not isinstance(data[key], dict):
                raise LoRAError(f"{path}: its {key}: section is empty or not a mapping: {CONFIG_HINT}")
            return data[key]
    if "pretrained_path" in data or "train_manifest" in data:
        raise LoRAError(f"{path} is a training config without a lora: section (a full fine-tune?): convert a full "
                        f"fine-tune with MODEL=<its step folder> alone, or {CONFIG_HINT}")
    if not set(data) & known:
        raise LoRAError(f"{path} holds none of voxcpm's LoRAConfig fields ({', '.join(sorted(known))}): {CONFIG_HINT}")
    return data


def read_config(path) -> LoRASettings:
    path = Path(path).expanduser()
    if not path.is_file():
        raise LoRAError(f"LoRA config {path} does not exist: {CONFIG_HINT}")
    data = _parse(path)
    section = _section(data, path)
    unknown = sorted(set(section) - set(lora_config_class().model_fields))
    if unknown:
        raise LoRAError(f"{path}: {', '.join(unknown)} {'is not a' if len(unknown) == 1 else 'are not'} LoRAConfig "
                        f"field{'s' if len(unknown) > 1 else ''} of voxcpm 2.0.3 (a typo?): fix the config")
    try:
        config = lora_config_class().model_validate(section)
    except Exception as exc:  # pydantic's ValidationError: the first problem is enough
        first = " ".join(str(exc).split("\n")[1:3]).strip()
        raise LoRAError(f"{path}: the lora settings are not valid ({first[:160]}): fix the config") from None
    if config.r <= 0 or config.alpha <= 0:
        raise LoRAError(f"{path}: r and alpha must be positive (r={config.r}, alpha={config.alpha}): fix the config")
    hints = {"pretrained_path": data.get("pretrained_path") or data.get("base_model"),
             "sample_rate": data.get("sample_rate")}
    where = f"{path} ({'lora: section' if 'lora' in data else 'lora_config' if 'lora_config' in data else 'fields'})"
    return LoRASettings(config.model_dump(), where, alpha_from_default="alpha" not in section,
                        base_hints={k: v for k, v in hints.items() if v is not None})


# ----------------------------------------------------------------------------- from the keys
def infer_config(ranks: dict[str, int]) -> LoRASettings:
    """Settings from the adapted modules (module path -> rank): r, the switches and the target names;
    alpha is voxcpm's default, which the weights cannot tell."""
    parts = {module: part_of(module) for module in ranks}
    names = {part: sorted({m.rsplit(".", 1)[-1] for m, p in parts.items() if p == part})
             for part in ("lm", "dit", "proj")}
    defaults = lora_config_class()()
    config = defaults.model_copy(update={
        "r": next(iter(ranks.values())),
        "enable_lm": bool(names["lm"]), "enable_dit": bool(names["dit"]), "enable_proj": bool(names["proj"]),
        "target_modules_lm": names["lm"] or defaults.target_modules_lm,
        "target_modules_dit": names["dit"] or defaults.target_modules_dit,
        "target_proj_modules": names["proj"] or defaults.target_proj_modules})
    return LoRASettings(config.model_dump(), "the adapter's keys", from_keys=True, alpha_from_default=True)
