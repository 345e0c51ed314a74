"""Comparison records and their summary: one row per component, precision and output.

Every comparison (one output, one input case, maybe one rollout step) becomes a record with
runtime.metrics.compare's numbers and whether it meets its gate. A row passes when every gated
record under it passes; its worst record (the one furthest past, or closest to, its gate) is
what a failure message names.
"""
from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager

import numpy as np

from runtime.metrics import compare

from .gating import Gates


def badness(record: dict, gate) -> float:
    """How far a record is from its gate, in units of the gate (> 1 fails)."""
    if not record["finite"]:
        return float("inf")
    corr_room = max(1e-12, 1.0 - gate.corr)
    return max((1.0 - record["corr"]) / corr_room, record["rel_l2"] / max(1e-12, gate.rel_l2))


class Recorder:
    """Records, checks and notes, kept by section so that phases may run in any order while the report
    lists them in `order` (sections not named there follow, in the order first used)."""

    def __init__(self, gates: Gates, order: tuple[str, ...] = ()):
        self.gates = gates
        self.order = tuple(order)
        self.current = "main"
        self._records: dict[str, list[dict]] = {}
        self._checks: dict[str, list[dict]] = {}
        self._notes: dict[str, list[tuple]] = {}
        self.witnesses: dict = {}   # (component, precision) -> (badness, converted inputs) for localisation

    @contextmanager
    def section(self, name: str):
        previous, self.current = self.current, name
        try:
            yield self
        finally:
            self.current = previous

    def _ordered(self, by_section: dict) -> list:
        names = [n for n in self.order if n in by_section] + [n for n in by_section if n not in self.order]
        return [entry for name in names for entry in by_section[name]]

    @property
    def records(self) -> list[dict]:
        return self._ordered(self._records)

    @property
    def checks(self) -> list[dict]:
        return self._ordered(self._checks)

    def note(self, key: str, value) -> None:
        """A line of the report's Inputs section."""
        self._notes.setdefault(self.current, []).append((key, value))

    @property
    def notes(self) -> dict:
        return dict(self._ordered(self._notes))

    def add(self, component: str, precision: str, output: str, case: str, actual, expected, step=None,
            gated: bool = True, detail: str | None = None, metrics: dict | None = None) -> dict:
        metrics = metrics or compare(actual, expected)
        gate = self.gates.gate(component, precision)
        record = {"component": component, "precision": precision, "output": output, "case": case, "step": step,
                  **{k: float(v) if k != "finite" else bool(v) for k, v in metrics.items()},
                  "gated": gated, "passed": gate.passes(metrics) if gated else True}
        if detail:
            record["detail"] = detail
        self._records.setdefault(self.current, []).append(record)
        return record

    def witness(self, component: str, precision: str, inputs: dict, records: list[dict]) -> None:
        """Keep the inputs of the worst comparison so far: localisation replays them."""
        gate = self.gates.gate(component, precision)
        score = max((badness(r, gate) for r in records if r["gated"]), default=0.0)
        key = (component, precision)
        if key not in self.witnesses or score > self.witnesses[key][0]:
            self.witnesses[key] = (score, {k: np.array(v, copy=True) for k, v in inputs.items()})

    def check(self, component: str, precision: str, check: str, passed: bool, detail: str = "") -> dict:
        entry = {"component": component, "precision": precision, "check": check, "passed": bool(passed),
                 "detail": detail}
        self._checks.setdefault(self.current, []).append(entry)
        return entry


def worst_of(metrics: list[dict]) -> dict:
    """Worst over several compare() results (e.g. every cache of one step): min corr, max errors."""
    return {"corr": min(m["corr"] for m in metrics), "rel_l2": max(m["rel_l2"] for m in metrics),
            "max_abs": max(m["max_abs"] for m in metrics), "finite": all(m["finite"] for m in metrics)}


def summarize(records: list[dict], gates: Gates) -> list[dict]:
    """One row per (component, precision, output), in the order first seen."""
    groups: OrderedDict = OrderedDict()
    for r in records:
        groups.setdefault((r["component"], r["precision"], r["output"]), []).append(r)
    rows = []
    for (component, precision, output), group in groups.items():
        gated = [r for r in group if r["gated"]] or group
        gate = gates.gate(component, precision)
        worst = max(gated, key=lambda r: badness(r, gate))
        rows.append({"name": component, "precision": precision, "output": output,
                     "corr": min(r["corr"] for r in gated), "rel_l2": max(r["rel_l2"] for r in gated),
                     "max_abs": max(r["max_abs"] for r in gated), "finite": all(r["finite"] for r in gated),
                     "passed": all(r["passed"] for r in group), "gated": any(r["gated"] for r in group),
                     "cases": len(group), "worst": {"case": worst["case"], "step": worst["step"],
                                                    "detail": worst.get("detail")}})
    return rows


def series(records: list[dict]) -> list[dict]:
    """Per-step arrays of the LM rollouts: {name, precision, rollout, output, position, corr, rel_l2, max_abs}."""
    groups: OrderedDict = OrderedDict()
    for r in records:
        if r["step"] is not None:
            groups.setdefault((r["component"], r["precision"], r["case"], r["output"]), []).append(r)
    return [{"name": c, "precision": p, "rollout": case, "output": o, "position": [r["step"] for r in g],
             "corr": [r["corr"] for r in g], "rel_l2": [r["rel_l2"] for r in g], "max_abs": [r["max_abs"] for r in g]}
            for (c, p, case, o), g in groups.items()]


def stop_agreement(actual: np.ndarray, expected: np.ndarray, margin: float) -> dict:
    """Stop decisions (argmax) of [steps, 2] logits: agreement, and agreement where torch is decisive."""
    a, e = np.argmax(actual, -1), np.argmax(expected, -1)
    decisive = np.abs(expected[:, 1] - expected[:, 0]) >= margin
    agree = a == e
    return {"agreement": float(agree.mean()) if agree.size else 1.0,
            "decisive_steps": int(decisive.sum()),
            "decisive_agreement": float(agree[decisive].mean()) if decisive.any() else 1.0,
            "torch_stops": int(e.sum()), "converted_stops": int(a.sum())}
