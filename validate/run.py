"""The whole validation: torch references, converted packages, checks, localisation, report.

Phases in order: prepare (the unpatched model and the speech clip); references, everything torch
computes while the model is loaded (the host-side constants and which adapter the manifest names;
an LM package with states, checked call by call beside voxcpm's caches; the LM steps' teacher-forced
rollouts; then, the LMs dropped, the streaming decoder call by call beside the whole decoder, and
each stateless component's reference outputs, the VAE's last with nothing else of the model left),
after which the model is freed; stateless (each stateless component on its cases); rollouts (the
LM step packages following the recorded rollouts, every cache at every step); structure (what the
numbers may not see); localisation of failures; and end to end (ASR: it loads its own model, which its generator patches). The report lists them
in the order of SECTIONS, whatever order they ran in. Which components run in which phase follows
their declared kind. With a LoRA adapter the reference is voxcpm's own LoRA model, the adapter live
and unmerged; localisation, which replays the patched torch model, merges it.
"""
from __future__ import annotations

import gc
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from contract.components import LM_STATES, LM_STEP, STATELESS, STREAM_STEP
from contract.defaults import DEFAULT_LAYOUT, E2E_CER_MARGIN, E2E_MAX_WER

from . import cases as inp
from runtime import release_memory, run_allocator

from .gating import Gates
from .records import Recorder, badness, series, summarize
from .target import Target, find_target


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
    stream_patches: int = inp.STREAM_PATCHES
    revision: str | None = None
    progress: bool = True
    report_dir: Path | None = None
    layout: str = DEFAULT_LAYOUT
    e2e: bool = True                       # the end-to-end ASR check (validate/e2e.py)
    asr_model: str | None = None           # None: $ASR_MODEL, else Whisper base
    e2e_max_len: int | None = None         # cap on generated patches per sentence
    e2e_gate: bool | None = None           # None: gate unless the checkpoint is a fixture
    e2e_max_wer: float = E2E_MAX_WER
    e2e_cer_margin: float = E2E_CER_MARGIN
    lora: str | None = None                # a LoRA adapter on top of the model (checkpoint.lora)
    lora_config: str | None = None         # its settings (training YAML or JSON); None: read from its keys


def versions() -> dict:
    """The toolkit and tool versions the converter records too, and the platform."""
    from convert.manifest import toolkit_info

    info = toolkit_info()
    return {k: info[k] for k in ("coremltools", "torch", "numpy", "voxcpm", "python")} | {
        "toolkit commit": info["git_commit"] or "unknown", "platform": sys.platform}


#: the report lists records, checks and notes in this order, whatever order the phases run in
SECTIONS = ("prepare", "stateless", "streams", "constants", "lm steps", "lm states")


class Run:
    """One validation run.

    Torch first: `references` computes every reference output while the model is loaded (and runs
    the two checks that need torch beside a package: the streaming decoder and an LM with states),
    dropping the LMs before the VAE's long calls; then the model is freed, and the packages run
    against what was recorded. A full-size model is 3.6 GB in FP32: held beside the packages it
    more than doubled the peak (TRIALS.md, "validate · references first").
    """

    def __init__(self, settings: Settings, target: Target, adapter=None, adapter_sha256: str | None = None):
        self.settings, self.target = settings, target
        self.adapter, self.adapter_sha256 = adapter, adapter_sha256
        self.recorder = Recorder(settings.gates, SECTIONS)
        self.plots: dict = {}
        self.localization: list = []
        self.structural: list = []
        self.backend = None
        self.stateless_refs: dict = {}      # component -> [stateless.Referenced]
        self.round_trip: tuple | None = None  # (speech window, torch audio, sample rate)
        self.rollout_refs: list = []
        self.fsq = None

    def load_models(self, spec) -> dict:
        """precision -> the runtime model (a multifunction package: function name -> its model)."""
        import runtime

        def load(precision, function=None):
            return runtime.load(self.target.package(spec.name, precision), backend=self.settings.backend,
                                function=function)

        return {p: {f.name: load(p, f.name) for f in spec.functions} if spec.functions else load(p)
                for p in self.settings.precisions if spec.name in self.target.todo[p]}

    # ------------------------------------------------------------------ torch
    def prepare(self):
        from checkpoint.loading import load_voxcpm

        from .references import TorchReference

        self.model = load_voxcpm(self.settings.model, self.settings.revision, adapter=self.adapter)
        self.ref = TorchReference(self.model)
        speech, source = inp.speech_clip(self.ref.sample_rate)
        prompt = self.ref.prompt_patches(speech)
        self.context = inp.CaseContext(self.ref, speech, prompt, self.ref.embed_patches(prompt),
                                       self.settings.decoder_lengths, self.settings.stream_patches)
        release_memory()   # what loading and the prompt's VAE call freed: 0.8 GB at full size
        with self.recorder.section("prepare"):
            self.recorder.note("speech", f"{source}, {speech.size / self.ref.sample_rate:.2f} s")
            self.recorder.note("prompt", f"{len(prompt)} latent patches of the speech clip (torch VAE encoder)")
            if self.adapter is not None:
                self.recorder.note("LoRA", f"{self.adapter.describe()}; the reference runs it live in voxcpm's LoRALinear layers")

    def references(self):
        """Every torch output the package phases compare with; the model is freed at the end."""
        from .references import FSQReference

        self.constants()
        release_memory()
        self.lm_state_rollouts()
        self.record_lm_rollouts()
        self.fsq = FSQReference(self.model)
        cases = {spec.name: inp.cases_for(spec, self.context) for spec in self.target.specs(STATELESS)}
        self.drop("base_lm", "residual_lm")   # the LM work is done: 2.2 GB at full size
        self.streams()
        self.reference_stateless(cases)
        self.model = self.ref = self.context = None
        release_memory()

    def drop(self, *parts: str) -> None:
        for part in parts:
            setattr(self.model, part, None)
        release_memory()

    def keep_only(self, *parts: str) -> None:
        self.drop(*(name for name, _ in self.model.named_children() if name not in parts))

    def constants(self):
        from .constants import check_constants
        from .provenance import check_adapter

        with self.recorder.section("constants"):
            self.recorder.note("constants", check_constants(self.settings.out, self.context, self.recorder))
            unknown = check_adapter(self.settings.out, self.target.todo, self.target.layout.name,
                                    self.adapter_sha256, self.recorder)
            if unknown:
                self.recorder.note("adapter provenance", unknown)

    def lm_state_rollouts(self):
        """An LM with states is checked call by call beside voxcpm's own caches (its packages load here)."""
        from .state_rollout import run_state_rollouts

        for spec in self.target.specs(LM_STATES):
            models = [(spec, precision, functions) for precision, functions in self.load_models(spec).items()]
            self.backend = next(iter(models[0][2].values())).backend
            with self.recorder.section("lm states"):
                for key, value in run_state_rollouts(self.ref, self.context, models, self.recorder,
                                                     self.target.max_context, self.settings.steps,
                                                     self.settings.progress).items():
                    self.recorder.note(key, value)
            del models
            gc.collect()

    def record_lm_rollouts(self):
        from .rollout import plan_rollouts, record_rollouts

        specs = self.target.specs(LM_STEP)
        if not specs:
            return
        rollouts = plan_rollouts(self.ref, self.context.prompt_embeds, self.settings.steps, self.target.max_context)
        with self.recorder.section("lm steps"):
            self.recorder.note("LM rollouts", "; ".join(f"{r.label}: positions {r.start}..{r.end - 1}" for r in rollouts))
        self.rollout_refs = record_rollouts(self.ref, rollouts, specs, self.target.max_context, self.settings.progress)

    def streams(self):
        """The streaming decoder call by call beside the unpatched decoder's own convolution inputs."""
        from .streaming import run_streams

        for spec in self.target.specs(STREAM_STEP):
            models = self.load_models(spec)
            self.backend = next(iter(models.values())).backend
            whole = self.target.layout["audio_vae_decoder"] if "audio_vae_decoder" in self.target.layout else None
            whole_models = self.load_models(whole) if whole is not None and self.target.wanted(whole.name) else {}
            cases = inp.cases_for(spec, self.context)
            with self.recorder.section("streams"):
                self.recorder.note(spec.name, ", ".join(c.label for c in cases) + "; one patch per call, the package fed "
                          "only what it carried; contexts vs the whole decoder's own convolution inputs")
                run_streams(spec, cases, self.model, models, self.recorder, whole, whole_models,
                            self.settings.progress)
            del models, whole_models
            gc.collect()

    def reference_stateless(self, cases: dict):
        """Each stateless case through torch; the VAE's last and alone.

        Before the VAE's calls the rest of the model is dropped, and they run under the
        interpreter's allocator setting, the heap trimmed every 0.1 s: glibc reuses their
        activations from its heap instead of mapping each fresh, and the heap's free fragments go
        back meanwhile (full size: 70.8 -> 49.2 s, peak 3275 -> 2971 MiB, the same bits; untrimmed,
        44.8 s but 5507 MiB).
        """
        from .references import TRIM_SECONDS, TorchReference
        from .stateless import reference_cases, round_trip_reference

        specs = self.target.specs(STATELESS)
        vae = [s for s in specs if TorchReference.PARTS.get(s.reference) == "audio_vae"]
        for spec in specs:
            if spec not in vae:
                self.stateless_refs[spec.name] = reference_cases(spec, cases[spec.name], self.ref)
        self.keep_only("audio_vae")
        for spec in vae:
            with run_allocator(trim_every=TRIM_SECONDS):
                self.stateless_refs[spec.name] = reference_cases(spec, cases[spec.name], self.ref)
            release_memory()
        if self.target.wanted("audio_vae_encoder") and self.target.wanted("audio_vae_decoder"):
            window = self.target.layout["audio_vae_encoder"].inputs[0].shape[-1]
            speech = inp.in_window(self.context.speech, window)
            with run_allocator(trim_every=TRIM_SECONDS):
                self.round_trip = (speech, round_trip_reference(speech, self.ref), self.ref.sample_rate)
            release_memory()

    # ------------------------------------------------------------------ packages
    def stateless(self):
        from .stateless import run_cases, vae_round_trip

        kept = {}
        with self.recorder.section("stateless"):
            for spec in self.target.specs(STATELESS):
                models = self.load_models(spec)
                self.backend = next(iter(models.values())).backend
                referenced = self.stateless_refs.pop(spec.name)
                self.recorder.note(spec.name, ", ".join(r.case.label for r in referenced))
                run_cases(spec, referenced, models, self.recorder, self.settings.progress)
                if spec.name.startswith("audio_vae"):
                    kept[spec.name] = models
                del models
                release_memory()
            if "audio_vae_encoder" in kept and "audio_vae_decoder" in kept and self.round_trip is not None:
                speech, torch_audio, self.plots["sample_rate"] = self.round_trip
                self.plots["vae_round_trip"] = vae_round_trip(speech, torch_audio, kept["audio_vae_encoder"],
                                                              kept["audio_vae_decoder"], self.recorder)
        del kept
        release_memory()

    def rollouts(self):
        from .rollout import run_rollouts

        models = []
        for spec in self.target.specs(LM_STEP):
            for precision, model in self.load_models(spec).items():
                models.append((spec, precision, model))
                self.backend = model.backend
        if models:
            with self.recorder.section("lm steps"):
                run_rollouts(self.rollout_refs, self.fsq, models, self.recorder, self.settings.progress)
        self.rollout_refs = []
        del models
        release_memory()

    def structure(self):
        from .structural import check_package

        for precision, components in self.target.todo.items():
            for component in components:
                spec = self.target.layout[component]
                for entry in check_package(spec, self.target.package(component, precision), precision):
                    self.structural.append({"component": component, "precision": precision, **entry})

    def localize_all(self, rows: list[dict]):
        # localisation replays one call of a stateless program: not an LM package with states
        rows = [r for r in rows if self.target.layout[r["name"]].kind != LM_STATES]
        failing = {(r["name"], r["precision"]) for r in rows if not r["passed"]}
        targets = [key for key in self.recorder.witnesses if self.settings.localize or key in failing]
        if not targets:
            return
        from .localize import localize_component

        patched = None   # the unpatched reference was freed after the references phase
        for component, precision in targets:
            if patched is None:
                from checkpoint.loading import load_voxcpm
                from patches.apply import patch_model

                patched = load_voxcpm(self.settings.model, self.settings.revision)
                patched = patch_model(self.adapter.merge_into(patched) if self.adapter else patched)
            _, arrays = self.recorder.witnesses[(component, precision)]
            gate = self.settings.gates.gate(component, precision)
            result = localize_component(patched, self.target.layout[component],
                                        self.target.package(component, precision), arrays, gate)
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


def _end_to_end(settings: Settings, target: Target, adapter=None) -> dict:
    from contract import artifacts

    from .e2e import run_e2e

    if not artifacts.has_generation_config(settings.out):
        note = (f"skipped: {settings.out} has no constants/ (the generator needs the generation config, the "
                f"embeddings and the projections): convert there, or pass --no-e2e")
        return {"status": "skipped", "note": note, "passed": True}
    return run_e2e(settings.model, settings.out, settings.precisions, settings.backend, revision=settings.revision,
                   asr=settings.asr_model, max_len=settings.e2e_max_len, gate=settings.e2e_gate,
                   max_wer=settings.e2e_max_wer, cer_margin=settings.e2e_cer_margin, progress=settings.progress,
                   layout=target.layout.name, adapter=adapter)


def open_adapter(settings: Settings):
    """(the adapter checked against the model, its sha256) as the converter opens it, or (None, None)."""
    if settings.lora is None:
        return None, None
    from checkpoint.loading import config_dict, resolve_source
    from convert.pipeline import open_adapter as open_checked

    checkpoint = resolve_source(settings.model, settings.revision)
    return open_checked(settings.lora, settings.lora_config, checkpoint, config_dict(checkpoint))


def _memory() -> dict:
    from contract.memory import peak_rss_mib, rss_mib

    return {"rss": round(rss_mib()), "peak": round(peak_rss_mib())}


def validate(settings: Settings) -> dict:
    """Run everything; returns the results dict that report.write_report takes."""
    start = time.time()
    target = find_target(settings.out, settings.model, settings.revision, settings.layout, settings.precisions,
                         settings.components, settings.explicit_components)
    adapter, adapter_sha256 = open_adapter(settings)  # a bad adapter: one line, before anything is loaded
    if settings.e2e:  # fail before the long component run, not after it
        from .e2e import check_asr

        check_asr(settings.asr_model)
    run = Run(settings, target, adapter, adapter_sha256)
    timings, memory = {}, {}
    for phase in ("prepare", "references", "stateless", "rollouts", "structure"):
        began = time.time()
        getattr(run, phase)()
        timings[phase] = round(time.time() - began, 1)
        memory[phase] = _memory()
    rows = summarize(run.recorder.records, settings.gates)
    began = time.time()
    run.localize_all([r for r in rows if r["gated"]] + [
        {"name": c["component"], "precision": c["precision"], "passed": c["passed"]} for c in run.structural])
    timings["localize"] = round(time.time() - began, 1)
    memory["localize"] = _memory()
    checks = run.recorder.checks
    passed = all(r["passed"] for r in rows) and all(c["passed"] for c in run.structural + checks)
    failure = "" if passed else failure_message(rows, run.structural, checks, settings.gates)
    e2e = None
    if settings.e2e:
        release_memory()   # e2e loads its own model: give back what the package phases held first
        began = time.time()
        e2e = _end_to_end(settings, target, run.adapter)
        timings["e2e"] = round(time.time() - began, 1)
        memory["e2e"] = _memory()
        if not e2e["passed"]:
            failure = "; ".join(x for x in (failure, e2e["failure"]) if x)
        passed = passed and e2e["passed"]
    return {"model": str(settings.model), "out": str(settings.out), "backend": run.backend or settings.backend,
            "adapter": {"sha256": adapter_sha256, **adapter.record()} if adapter else None,
            "layout": target.layout.name, "precisions": list(settings.precisions), "passed": passed,
            "declaration": {"source": target.source, "unknown": target.unknown},
            "failure": failure, "e2e": e2e or {"status": "skipped", "note": "--no-e2e"},
            "components": rows, "steps": series(run.recorder.records), "checks": checks,
            "structural": run.structural, "localization": run.localization, "gates": settings.gates.as_dict(),
            "inputs": run.recorder.notes, "versions": versions(), "wall_seconds": round(time.time() - start, 1),
            "phase_seconds": timings,
            "phase_memory_mib": memory,   # after each phase: the process's resident set and its peak so far
            "settings": {"steps": settings.steps, "decoder_lengths": list(settings.decoder_lengths),
                         "stream_patches": settings.stream_patches,
                         "max_context": target.max_context, "components": {p: c for p, c in target.todo.items()}},
            "_plots": run.plots}
