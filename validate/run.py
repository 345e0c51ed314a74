"""The whole validation: torch references, converted packages, checks, localisation, report."""
from __future__ import annotations

import gc
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import inputs as inp
from .gates import Gates
from .metrics import Recorder, badness, series, summarize

ROOT = Path(__file__).resolve().parents[1]
STATELESS = ("audio_vae_encoder", "audio_vae_decoder", "feat_encoder", "locdit_step")
LM_STEPS = ("base_lm_step", "residual_lm_step")


class ValidateError(Exception):
    """An expected failure before validation starts; one line `<problem>: <fix>`."""


@dataclass
class Settings:
    model: str
    out: Path
    precisions: tuple[str, ...]
    components: tuple[str, ...]
    explicit_components: bool = False
    backend: str = "auto"
    steps: int = 64
    gates: Gates = field(default_factory=Gates)
    localize: bool = False
    decoder_lengths: tuple[int, ...] = inp.DECODER_LENGTHS
    revision: str | None = None
    progress: bool = True
    report_dir: Path | None = None
    e2e: bool = True                       # the end-to-end ASR check (validate/e2e.py)
    asr_model: str | None = None           # None: $ASR_MODEL, else Whisper base
    e2e_max_len: int | None = None         # cap on generated patches per sentence
    e2e_gate: bool | None = None           # None: gate unless the checkpoint is a fixture
    e2e_max_wer: float = 0.3
    e2e_cer_margin: float = 0.1


# ----------------------------------------------------------------------------- what is there
def package(out: Path, component: str, precision: str) -> Path:
    return Path(out) / precision / f"{component}.mlpackage"


def converted(out: Path, precision: str) -> list[str]:
    from convert.interface import COMPONENTS

    return [c for c in COMPONENTS if package(out, c, precision).is_dir()]


def check_out(settings: Settings) -> dict:
    """{precision: [components]} to validate, or a ValidateError saying what is missing."""
    out = Path(settings.out)
    if not out.is_dir():
        raise ValidateError(f"{out} does not exist: convert first (python -m convert --out {out})")
    if not any(converted(out, p) for p in ("fp16", "int8")):
        raise ValidateError(f"{out} holds no converted packages ({out}/fp16|int8/<component>.mlpackage): "
                            f"run python -m convert --out {out} first")
    todo = {}
    for precision in settings.precisions:
        have = converted(out, precision)
        if not have:
            raise ValidateError(f"{out} has no {precision} packages: convert with --precision {precision} "
                                f"or validate another precision")
        missing = [c for c in settings.components if c not in have]
        if missing and settings.explicit_components:
            raise ValidateError(f"{out}/{precision} has no {', '.join(missing)}: convert it or leave it out of "
                                f"--components")
        todo[precision] = [c for c in settings.components if c in have]
    return todo


def max_context(out: Path) -> int:
    from convert.interface import MAX_CONTEXT

    try:
        manifest = json.loads((Path(out) / "manifest.json").read_text(encoding="utf-8"))
        return int(manifest.get("settings", {}).get("max_context", MAX_CONTEXT))
    except (OSError, ValueError):
        return MAX_CONTEXT


def versions() -> dict:
    import coremltools
    import torch

    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True,
                               timeout=10).stdout.strip()
        commit = (commit + ("+dirty" if dirty else "")) or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    try:
        from importlib.metadata import version

        voxcpm = version("voxcpm")
    except Exception:
        voxcpm = "unknown"
    return {"coremltools": coremltools.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "voxcpm": voxcpm, "python": platform.python_version(), "toolkit commit": commit,
            "platform": sys.platform}


# ----------------------------------------------------------------------------- running
def load_models(settings: Settings, todo: dict, component: str) -> dict:
    import runtime

    return {p: runtime.load(package(settings.out, component, p), backend=settings.backend)
            for p in settings.precisions if component in todo[p]}


class Run:
    def __init__(self, settings: Settings, todo: dict):
        self.settings, self.todo = settings, todo
        self.recorder = Recorder(settings.gates)
        self.notes: dict = {}
        self.plots: dict = {}
        self.localization: list = []
        self.structural: list = []
        self.backend = None

    def wanted(self, component: str) -> bool:
        return any(component in comps for comps in self.todo.values())

    def prepare(self):
        from convert.interface import interfaces
        from patches.loading import load_voxcpm

        from .references import TorchReference

        self.model = load_voxcpm(self.settings.model, self.settings.revision)
        self.ref = TorchReference(self.model)
        raw = json.loads((Path(self.model.checkpoint_dir) / "config.json").read_text(encoding="utf-8"))
        self.max_context = max_context(self.settings.out)
        self.ifaces = interfaces(raw, self.max_context)
        self.speech, source = inp.speech_clip(self.ref.sample_rate)
        self.window = self.ifaces["audio_vae_encoder"].inputs[0].shape[-1]
        self.prompt = self.ref.prompt_patches(self.speech)
        self.prompt_embeds = self.ref.embed_patches(self.prompt)
        self.notes["speech"] = f"{source}, {self.speech.size / self.ref.sample_rate:.2f} s"
        self.notes["prompt"] = f"{len(self.prompt)} latent patches of the speech clip (torch VAE encoder)"

    def stateless(self):
        from .stateless import run_cases, vae_round_trip

        speech_window = inp.in_window(self.speech, self.window)
        cases = inp.stateless_cases(self.ref, self.ifaces, self.speech, self.prompt, self.prompt_embeds,
                                    self.settings.decoder_lengths)
        kept = {}
        for component in STATELESS:
            if not self.wanted(component):
                continue
            models = load_models(self.settings, self.todo, component)
            self.backend = next(iter(models.values())).backend
            self.notes[component] = ", ".join(c.label for c in cases[component])
            run_cases(component, cases[component], self.ref, models, self.recorder, self.ifaces[component],
                      self.settings.progress)
            if component.startswith("audio_vae"):
                kept[component] = models
            del models
            gc.collect()
        if "audio_vae_encoder" in kept and "audio_vae_decoder" in kept:
            waves = vae_round_trip(speech_window, self.ref, kept["audio_vae_encoder"], kept["audio_vae_decoder"],
                                   self.recorder)
            self.plots["vae_round_trip"], self.plots["sample_rate"] = waves, self.ref.sample_rate
        del kept
        gc.collect()

    def rollouts(self):
        from .rollout import plan_rollouts, run_rollouts

        components = [c for c in LM_STEPS if self.wanted(c)]
        if not components:
            return
        rollouts = plan_rollouts(self.ref, self.prompt_embeds, self.settings.steps, self.max_context)
        self.notes["LM rollouts"] = "; ".join(f"{r.label}: positions {r.start}..{r.end - 1}" for r in rollouts)
        models = {}
        for component in components:
            for precision, model in load_models(self.settings, self.todo, component).items():
                models[(component, precision)] = model
                self.backend = model.backend
        run_rollouts(self.ref, rollouts, models, self.recorder, self.max_context, self.settings.progress)
        del models
        gc.collect()

    def structure(self):
        from .structural import check_package

        for precision, components in self.todo.items():
            for component in components:
                for entry in check_package(component, package(self.settings.out, component, precision), precision):
                    self.structural.append({"component": component, "precision": precision, **entry})

    def localize_all(self, rows: list[dict]):
        failing = {(r["name"], r["precision"]) for r in rows if not r["passed"]}
        targets = [key for key in self.recorder.witnesses if self.settings.localize or key in failing]
        if not targets:
            return
        from .localize import localize_component

        # the unpatched reference is done with: free it before a second (patched) copy is loaded
        # (a full-size run was OOM-killed at 24 GB holding both)
        self.model = self.ref = None
        gc.collect()
        patched = None
        for component, precision in targets:
            if patched is None:
                from patches.apply import patch_model
                from patches.loading import load_voxcpm

                patched = patch_model(load_voxcpm(self.settings.model, self.settings.revision))
            _, arrays = self.recorder.witnesses[(component, precision)]
            gate = self.settings.gates.gate(component, precision)
            result = localize_component(patched, self.ifaces[component], package(self.settings.out, component, precision),
                                        arrays, gate, self.max_context)
            self.localization.append({"component": component, "precision": precision, **result})
        del patched
        gc.collect()


def failure_message(rows: list[dict], structural: list[dict], checks: list[dict], gates: Gates) -> str:
    failed = [r for r in rows if not r["passed"]]
    parts = []
    if failed:
        worst = max(failed, key=lambda r: badness(r, gates.gate(r["name"], r["precision"])))
        w = worst["worst"]
        where = w["case"] + (f", position {w['step']}" if w["step"] is not None else "")
        where += f", {w['detail']}" if w.get("detail") else ""
        parts.append(f"{worst['name']} {worst['precision']} {worst['output']}: corr {worst['corr']:.6f}, "
                     f"rel-L2 {worst['rel_l2']:.3g} ({where})")
        others = sorted({f"{r['name']} {r['precision']}" for r in failed} - {f"{worst['name']} {worst['precision']}"})
        if others:
            parts.append("also " + ", ".join(others))
    for c in structural + checks:
        if not c["passed"]:
            parts.append(f"{c['component']} {c['precision']}: {c['check']} fails ({c['detail']})")
    return "; ".join(parts)


def validate(settings: Settings) -> dict:
    """Run everything; returns the results dict that report.write_report takes."""
    start = time.time()
    todo = check_out(settings)
    if settings.e2e:  # fail before the long component run, not after it
        from .e2e import check_asr

        check_asr(settings.asr_model)
    run = Run(settings, todo)
    timings = {}
    for phase in ("prepare", "stateless", "rollouts", "structure"):
        began = time.time()
        getattr(run, phase)()
        timings[phase] = round(time.time() - began, 1)
    rows = summarize(run.recorder.records, settings.gates)
    began = time.time()
    run.localize_all([r for r in rows if r["gated"]] + [
        {"name": c["component"], "precision": c["precision"], "passed": c["passed"]} for c in run.structural])
    timings["localize"] = round(time.time() - began, 1)
    checks = run.recorder.checks
    passed = all(r["passed"] for r in rows) and all(c["passed"] for c in run.structural + checks)
    failure = "" if passed else failure_message(rows, run.structural, checks, settings.gates)
    e2e = None
    if settings.e2e:
        from .e2e import run_e2e

        run.model = run.ref = None  # free the unpatched model first: e2e loads its own (patched) copy
        gc.collect()
        began = time.time()
        e2e = run_e2e(settings.model, settings.out, settings.precisions, settings.backend,
                      revision=settings.revision, asr=settings.asr_model, max_len=settings.e2e_max_len,
                      gate=settings.e2e_gate, max_wer=settings.e2e_max_wer, cer_margin=settings.e2e_cer_margin,
                      progress=settings.progress)
        timings["e2e"] = round(time.time() - began, 1)
        if not e2e["passed"]:
            failure = "; ".join(x for x in (failure, e2e["failure"]) if x)
        passed = passed and e2e["passed"]
    return {"model": str(settings.model), "out": str(settings.out), "backend": run.backend or settings.backend,
            "precisions": list(settings.precisions), "passed": passed,
            "failure": failure, "e2e": e2e or {"status": "skipped", "note": "--no-e2e"},
            "components": rows, "steps": series(run.recorder.records), "checks": checks,
            "structural": run.structural, "localization": run.localization, "gates": settings.gates.as_dict(),
            "inputs": run.notes, "versions": versions(), "wall_seconds": round(time.time() - start, 1), "phase_seconds": timings,
            "settings": {"steps": settings.steps, "decoder_lengths": list(settings.decoder_lengths),
                         "max_context": run.max_context, "components": {p: c for p, c in todo.items()}},
            "_plots": run.plots}
