"""Accuracy gates: what a converted output must meet against the FP32 torch reference.

Defaults: `contract.defaults.GATES` (TRIALS.md, "validation gates"). They were calibrated on
random-weight checkpoints and must be recalibrated on the real VoxCPM 1.5 weights. A JSON file
may override them per precision and per component:

    {"fp16": {"corr": 0.9999, "rel_l2": 5e-3}, "int8": {"corr": 0.999, "rel_l2": 2e-2},
     "stop_margin": 0.05, "fsq_margin": {"fp16": 0.1, "int8": 0.3}, "components": {"audio_vae_decoder": {"int8": {"rel_l2": 3e-2}}}}
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from contract.defaults import FSQ_MARGIN as DEFAULT_FSQ_MARGIN
from contract.defaults import GATES as DEFAULTS
from contract.defaults import STOP_MARGIN as DEFAULT_STOP_MARGIN


class GateError(ValueError):
    """A gates file or flag that cannot be used."""


@dataclass(frozen=True)
class Gate:
    corr: float
    rel_l2: float

    def passes(self, metrics: dict) -> bool:
        return bool(metrics.get("finite", True) and metrics["corr"] >= self.corr and metrics["rel_l2"] <= self.rel_l2)


@dataclass
class Gates:
    precisions: dict = field(default_factory=lambda: {p: dict(v) for p, v in DEFAULTS.items()})
    components: dict = field(default_factory=dict)
    stop_margin: float = DEFAULT_STOP_MARGIN
    fsq_margin: dict = field(default_factory=lambda: dict(DEFAULT_FSQ_MARGIN))

    def gate(self, component: str, precision: str) -> Gate:
        values = {**self.precisions[precision], **self.components.get(component, {}).get(precision, {})}
        return Gate(float(values["corr"]), float(values["rel_l2"]))

    def as_dict(self) -> dict:
        return asdict(self)


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GateError(f"{where} must be a number, got {value!r}")
    return float(value)


def _thresholds(raw: dict, where: str) -> dict:
    if not isinstance(raw, dict) or set(raw) - {"corr", "rel_l2"}:
        raise GateError(f"{where} must be an object with keys corr and/or rel_l2")
    return {k: _number(v, f"{where}.{k}") for k, v in raw.items()}


def load_gates(path: str | Path | None = None, overrides: dict | None = None) -> Gates:
    """Defaults, then the JSON file at `path`, then `overrides` {(precision, key): value} from flags."""
    gates = Gates()
    if path is not None:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise GateError(f"cannot read gates file {path} ({exc})") from None
        if not isinstance(raw, dict):
            raise GateError(f"gates file {path} must hold a JSON object")
        for precision in DEFAULTS:
            if precision in raw:
                gates.precisions[precision].update(_thresholds(raw[precision], precision))
        if "stop_margin" in raw:
            gates.stop_margin = _number(raw["stop_margin"], "stop_margin")
        for precision, value in (raw.get("fsq_margin") or {}).items():
            gates.fsq_margin[precision] = _number(value, f"fsq_margin.{precision}")
        for component, per in (raw.get("components") or {}).items():
            gates.components[component] = {p: _thresholds(v, f"components.{component}.{p}") for p, v in per.items()}
        unknown = set(raw) - {*DEFAULTS, "stop_margin", "fsq_margin", "components"}
        if unknown:
            raise GateError(f"gates file {path} has unknown keys {sorted(unknown)}")
    for (precision, key), value in (overrides or {}).items():
        if value is not None:
            gates.precisions[precision][key] = float(value)
    return gates
