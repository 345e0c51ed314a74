"""The whole conversion: checkpoint (+ LoRA adapter) -> the packages of one or more layouts under OUT,
constants, manifest.

An adapter (`checkpoint.lora`) is checked before anything is written and merged into the FP32
weights before patching (W + alpha/r · B·A, the projections in OUT/constants too), so the
artifacts are a plain conversion of the merged model; every inputs key holds the adapter's sha256
and settings, so that nothing built from the base alone or from another adapter is reused.

Memory: the model is loaded once (3.2 GB fp32 at full size) only if something must be built;
components are converted one at a time in each layout's order (the layouts one after the other),
and each part of the model is dropped as soon as no later component of any layout reads it. INT8
packages are quantized from the saved fp16 package, after the torch module and the fp16 program
are freed; a multifunction package (the fast layout's `lm`) cannot be quantized once merged, so its
functions are quantized one by one from their fp16 programs and merged again. FP32 packages (a
reference build for parity checks, only on request) are converted with FLOAT32 compute.
"""
from __future__ import annotations

import gc
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from contract import artifacts
from contract.atomic import recover, remove, write_atomically
from contract.defaults import DEFAULT_LAYOUT, INFERENCE_TIMESTEPS, MAX_CONTEXT, PRECISIONS, PREFILL_CHUNK
from contract.fast import NAME as FAST
from contract.layout import Layout, declare, option_metadata
from contract.memory import peak_rss_mib

from .hashing import tree_sha256, tree_size
from .manifest import Manifest, inputs_key, toolkit_info, weights_sha256

CONSTANTS = artifacts.CONSTANTS


class ConvertError(Exception):
    """An expected failure; the message is one line: `<problem>: <fix>`."""


@dataclass
class Settings:
    model: str
    out: Path
    precisions: tuple[str, ...] = ("int8",)
    components: tuple[str, ...] | None = None      # None: every layout's required components (no optional one)
    revision: str | None = None
    force: bool = False
    max_context: int = MAX_CONTEXT                 # the published layout's context (and the generation config's)
    layouts: tuple[str, ...] = (DEFAULT_LAYOUT,)
    context: int | None = None                     # the fast layout's context (None: its default)
    prefill_chunk: int = PREFILL_CHUNK             # the fast layout's positions per prefill call
    timesteps: int = INFERENCE_TIMESTEPS           # the fast layout's diffusion steps

    def layout_options(self, name: str) -> dict:
        """What `contract.layout.declare` takes for layout `name` besides the checkpoint config."""
        if name == FAST:
            return {"max_context": self.context, "prefill_chunk": self.prefill_chunk, "timesteps": self.timesteps}
        return {"max_context": self.max_context}

    def wants(self, component: str, layout: Layout) -> bool:
        return component in (layout.required if self.components is None else self.components)
    lora: str | None = None                        # a LoRA adapter (file or folder) merged into the model
    lora_config: str | None = None                 # its settings (training YAML or JSON); None: read from its keys


@dataclass
class Row:
    component: str
    precision: str
    size_mib: float
    seconds: float
    status: str


@dataclass
class Context:
    settings: Settings
    checkpoint: Path
    raw_config: dict
    weights: dict
    toolkit: dict
    manifest: Manifest
    layouts: list = field(default_factory=list)    # the declared layouts to build, in order
    rows: list = field(default_factory=list)
    model: object = None
    adapter: object = None                # checkpoint.lora.Adapter, or None
    adapter_sha256: str | None = None
    notes: list = field(default_factory=list)   # lines for the end of the summary

    def key(self, component: str, precision: str, layout: Layout) -> str:
        # the published layout's keys stay what they were before layouts existed: no needless rebuilds
        settings = ({"max_context": self.settings.max_context} if layout.name == DEFAULT_LAYOUT
                    else {"layout": layout.name, **layout.options})
        return inputs_key(self.weights, self.toolkit, component=component, precision=precision, **settings,
                          **self._adapter_setting())

    def constants_key(self) -> str:
        return inputs_key(self.weights, self.toolkit, component=CONSTANTS, max_context=self.settings.max_context,
                          **self._adapter_setting())

    def _adapter_setting(self) -> dict:
        # without an adapter the keys stay what they were: a base conversion is not redone
        if self.adapter is None:
            return {}
        return {"adapter": {"sha256": self.adapter_sha256, "config": self.adapter.settings.fields}}

    def adapter_entry(self) -> dict:
        """What each artifact's manifest entry says of the adapter merged into it."""
        return {} if self.adapter is None else {"adapter_sha256": self.adapter_sha256}

    def name(self, component: str, precision: str, layout: Layout) -> str:
        return artifacts.artifact_key(precision, component, layout.name)

    def package(self, component: str, precision: str, layout: Layout) -> Path:
        return artifacts.package_path(self.settings.out, precision, component, layout.name)


# ----------------------------------------------------------------------------- preparation
def prepare_out(out: Path, layouts: tuple[str, ...]) -> Path:
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConvertError(f"cannot write to {out} ({exc.strerror or exc}): "
                           f"choose a writable --out or fix its permissions") from None
    for sub in (out, *(artifacts.precision_dir(out, p, layout) for p in PRECISIONS for layout in layouts)):
        recover(sub)
    return out


def declare_layouts(settings: Settings, raw_config: dict) -> list[Layout]:
    """The layouts to build, declared for this checkpoint; a bad option is one line (ConvertError)."""
    try:
        return [declare(raw_config, name, **settings.layout_options(name)) for name in settings.layouts]
    except ValueError as exc:
        raise ConvertError(str(exc)) from None


def open_adapter(lora: str | None, lora_config: str | None, checkpoint: Path, raw_config: dict):
    """(the adapter checked against the base checkpoint, its sha256), or (None, None) without one; a bad
    adapter is a LoRAError (one line). Validation opens it the same way."""
    if lora is None:
        return None, None
    from checkpoint.lora import open_adapter as open_lora

    from .hashing import file_sha256

    adapter = open_lora(lora, lora_config, checkpoint, raw_config["audio_vae_config"]["sample_rate"],
                        weights_of=weights_sha256)
    return adapter, file_sha256(adapter.file)


def open_context(settings: Settings) -> Context:
    from checkpoint.loading import config_dict, require_files, resolve_source

    checkpoint = resolve_source(settings.model, settings.revision)
    raw_config = config_dict(checkpoint)  # checked; a CheckpointError is one line
    require_files(checkpoint)
    layouts = declare_layouts(settings, raw_config)
    # checked before anything is written
    adapter, adapter_sha256 = open_adapter(settings.lora, settings.lora_config, checkpoint, raw_config)
    out = prepare_out(settings.out, settings.layouts)
    toolkit = toolkit_info()
    manifest = Manifest(out)
    source = {"model": settings.model, "revision": settings.revision, "checkpoint_dir": str(checkpoint.resolve())}
    context = Context(settings, checkpoint, raw_config, {}, toolkit, manifest, layouts, adapter=adapter,
                      adapter_sha256=adapter_sha256)
    if adapter is not None:
        source["adapter"] = {"sha256": adapter_sha256, **adapter.record()}
        context.notes = [adapter.describe()] + [f"warning: {w}" for w in [adapter.warning()] if w]
        for line in context.notes:
            print(line, file=sys.stderr, flush=True)
    # Hashing 3.2 GB takes ~6 s: when the model must be loaded anyway, load it meanwhile
    # (sha256 and file reads release the GIL, and there are two cores).
    with ThreadPoolExecutor(max_workers=1) as pool:
        hashing = pool.submit(weights_sha256, checkpoint)
        if surely_needs_model(context):
            load_model(context)
        context.weights = hashing.result()
    source["weights_sha256"] = context.weights
    source["config"] = raw_config
    manifest.set_source(source, toolkit)
    manifest.data["settings"] = {"max_context": settings.max_context}
    return context


def surely_needs_model(context: Context) -> bool:
    """True when some requested artifact has never been built here (or --force): no hash can skip it."""
    settings = context.settings
    wanted = [context.name(spec.name, p, layout) for layout in context.layouts for spec in layout
              if settings.wants(spec.name, layout) for p in settings.precisions] + [CONSTANTS]
    return settings.force or any(context.manifest.artifact(name) is None for name in wanted)


def is_current(context: Context, name: str, key: str, paths: list[Path]) -> bool:
    """The manifest says `name` was built from exactly these inputs, and it is still intact."""
    entry = context.manifest.artifact(name)
    if context.settings.force or not entry or entry.get("inputs_key") != key:
        return False
    if not all(p.exists() for p in paths):
        return False
    return [tree_sha256(p) for p in paths] == entry.get("sha256_parts", [entry.get("sha256")])


# ----------------------------------------------------------------------------- the model
def load_model(context: Context):
    """Loaded (the adapter merged in FP32) and patched once, on first need."""
    if context.model is None:
        from checkpoint.loading import load_voxcpm
        from patches.apply import patch_model

        start = time.time()
        print(f"loading {context.checkpoint} ...", file=sys.stderr, flush=True)
        model = load_voxcpm(context.checkpoint)
        if context.adapter is not None:
            model = merge_adapter(context.adapter, model)
        context.model = patch_model(model)
        print(f"loaded in {time.time() - start:.1f} s", file=sys.stderr, flush=True)
    return context.model


def merge_adapter(adapter, model):
    """The adapter folded into the unpatched FP32 model (a seam: the negative controls swap in wrong merges)."""
    return adapter.merge_into(model)


# ----------------------------------------------------------------------------- constants
def build_constants(context: Context) -> None:
    from .constants import extract_arrays, full_config, write_bin_dir, write_npy_dir

    out = context.settings.out
    paths = [artifacts.constants_dir(out), artifacts.constants_bin_dir(out)]
    key = context.constants_key()
    if is_current(context, CONSTANTS, key, paths):
        context.rows.append(Row(CONSTANTS, "fp32+fp16", sum(tree_size(p) for p in paths) / 2**20, 0.0, "up to date"))
        return
    start = time.time()
    model = load_model(context)
    arrays = extract_arrays(model)
    config = full_config(context.raw_config, arrays, context.checkpoint, context.settings.max_context)
    write_atomically(paths[0], lambda tmp: write_npy_dir(tmp, arrays, config))
    write_atomically(paths[1], lambda tmp: write_bin_dir(tmp, arrays, context.checkpoint))
    del arrays
    seconds = time.time() - start
    parts = [tree_sha256(p) for p in paths]
    size = sum(tree_size(p) for p in paths)
    context.manifest.record(CONSTANTS, {"paths": [p.name for p in paths], "inputs_key": key, "sha256_parts": parts,
                                        "size_bytes": size, "seconds": round(seconds, 1), **context.adapter_entry()})
    context.rows.append(Row(CONSTANTS, "fp32+fp16", size / 2**20, seconds, "built"))


# ----------------------------------------------------------------------------- components
def _save(context: Context, mlmodel, final: Path, spec, precision: str, layout: Layout) -> Path:
    from .packaging import describe, save

    adapter = None if context.adapter is None else f"{context.adapter.file.name} sha256 {context.adapter_sha256}"
    describe(mlmodel, spec, precision, layout.name, context.settings.model, context.toolkit["version"],
             option_metadata(layout), adapter)
    return save(mlmodel, final)


def _record(context: Context, component: str, precision: str, layout: Layout, package: Path, seconds: float,
            extra: dict | None = None) -> None:
    from runtime.package_info import interface

    from .packaging import compile_beside

    size = tree_size(package)
    entry = {"path": str(package.relative_to(context.settings.out)),
             "inputs_key": context.key(component, precision, layout),
             "sha256": tree_sha256(package), "size_bytes": size, "seconds": round(seconds, 1),
             "interface": interface(package), "compiled": compile_beside(package), **context.adapter_entry(),
             "peak_rss_mib": round(peak_rss_mib()),   # the converting process's peak so far (the bench reads it)
             **({"options": layout.options} if layout.options else {}), **(extra or {})}
    context.manifest.record(context.name(component, precision, layout), entry)
    context.rows.append(Row(_row_name(component, layout), precision, size / 2**20, seconds, "built"))


def _row_name(component: str, layout: Layout) -> str:
    return component if layout.name == DEFAULT_LAYOUT else f"{layout.name}/{component}"


def _progress(component: str, stages: int):
    from tqdm import tqdm

    return tqdm(total=stages, desc=f"{component:<24}", unit="stage", file=sys.stderr, leave=True, disable=False,
                bar_format="{desc} {bar:20} {n_fmt}/{total_fmt} {postfix} [{elapsed}]")


def convert_fp32(context: Context, spec, layout: Layout) -> None:
    """The FP32 reference package: the same capture, FLOAT32 compute, fp32 I/O (`spec` declares it)."""
    from .converters import convert

    bar = _progress(_row_name(spec.name, layout), 2)
    try:
        start = time.time()
        bar.set_postfix_str("capture + convert fp32")
        mlmodel = convert(spec, load_model(context))
        bar.update()
        bar.set_postfix_str("save fp32")
        final = _save(context, mlmodel, context.package(spec.name, "fp32", layout), spec, "fp32", layout)
        del mlmodel
        gc.collect()
        bar.update()
        _record(context, spec.name, "fp32", layout, final, time.time() - start)
        bar.set_postfix_str("done")
    finally:
        bar.close()


def _quantized(source, spec):
    """The int8 model of `source`: a saved fp16 package, or (multifunction) the fp16 `Functions`."""
    from .quantize import quantize_int8, quantize_model

    if spec.functions:
        return source.map(lambda model: quantize_model(model, spec.int8_fp16_parts))
    return quantize_int8(source, spec.int8_fp16_parts)


def convert_component(context: Context, spec, todo: list[str], layout: Layout) -> None:
    """Build the fp16 program (or reuse the current fp16 package) and the requested precisions."""
    from runtime.mil.loader import read_program

    from .converters import convert
    from .quantize import weight_report

    name, out = spec.name, context.settings.out
    fp16_final = context.package(name, "fp16", layout)
    work = out / f".work-{os.getpid()}"
    # int8 alone still needs an fp16 program: the current fp16 package if there is one (a merged
    # multifunction package cannot be quantized: its functions are converted again)
    build_fp16 = "fp16" in todo or ("int8" in todo and (bool(spec.functions) or not is_current(
        context, context.name(name, "fp16", layout), context.key(name, "fp16", layout), [fp16_final])))
    bar = _progress(_row_name(name, layout), 2 * build_fp16 + 2 * ("int8" in todo))
    try:
        source = fp16_final
        if build_fp16:
            start = time.time()
            bar.set_postfix_str("capture + convert")
            mlmodel = convert(spec, load_model(context))
            bar.update()
            bar.set_postfix_str("save fp16")
            path = fp16_final if "fp16" in todo else work / f"{name}.mlpackage"
            if "fp16" in todo or not spec.functions:
                _save(context, mlmodel, path, spec, "fp16", layout)
            source = mlmodel if spec.functions else path
            if not spec.functions:
                del mlmodel
            gc.collect()
            bar.update()
            if "fp16" in todo:
                _record(context, name, "fp16", layout, path, time.time() - start)
        if "int8" in todo:
            start = time.time()
            bar.set_postfix_str("quantize int8")
            quantized = _quantized(source, spec)
            del source
            bar.update()
            bar.set_postfix_str("save int8")
            final = _save(context, quantized, context.package(name, "int8", layout), spec, "int8", layout)
            bar.update()
            # the program quantization just built, else re-read from the package
            report = weight_report(getattr(quantized, "_mil_program", None) or read_program(final))
            del quantized
            gc.collect()
            _record(context, name, "int8", layout, final, time.time() - start, {"weights": report})
        bar.set_postfix_str("done")
    finally:
        bar.close()
        remove(work)


def plan(context: Context, layout: Layout) -> dict[str, list[str]]:
    """component -> precisions to build (in the layout's conversion order)."""
    todo = {}
    for spec in layout:
        if not context.settings.wants(spec.name, layout):
            continue
        needed = []
        for precision in context.settings.precisions:
            name, key = context.name(spec.name, precision, layout), context.key(spec.name, precision, layout)
            if is_current(context, name, key, [context.package(spec.name, precision, layout)]):
                entry = context.manifest.artifact(name)
                context.rows.append(Row(_row_name(spec.name, layout), precision, entry["size_bytes"] / 2**20, 0.0,
                                        "up to date"))
            else:
                needed.append(precision)
        if needed:
            todo[spec.name] = needed
    return todo


def run(settings: Settings) -> tuple[list[Row], list[str]]:
    """Convert; returns the summary's rows and the notes to print after it (the adapter, loudly)."""
    from .converters import drop_parts
    from contract.quiet import quiet_conversion_bars

    context = open_context(settings)
    plans = [(layout, plan(context, layout)) for layout in context.layouts]
    build_constants(context)
    remaining = [(layout, spec, todo[spec.name]) for layout, todo in plans for spec in layout if spec.name in todo]
    if remaining:
        quiet_conversion_bars()
        model = load_model(context)
        model.base_lm.embed_tokens = None  # in constants already; the LM steps take embeddings as input
        while remaining:
            layout, spec, precisions = remaining.pop(0)
            if "fp32" in precisions:
                convert_fp32(context, layout.for_precision("fp32")[spec.name], layout)
            if set(precisions) - {"fp32"}:
                convert_component(context, spec, precisions, layout)
            drop_parts(model, spec, [later for _, later, _ in remaining])
            gc.collect()
    context.model = None
    gc.collect()
    context.manifest.save()
    return context.rows, context.notes


def summary(rows: list[Row], seconds: float) -> str:
    width = max([18] + [len(row.component) for row in rows])
    lines = [f"{'component':<{width}} {'precision':<10} {'size MiB':>9} {'seconds':>8}  status",
             "-" * (width + 40)]
    for row in rows:
        lines.append(f"{row.component:<{width}} {row.precision:<10} {row.size_mib:>9.1f} {row.seconds:>8.1f}  "
                     f"{row.status}")
    lines.append(f"total {seconds:.1f} s")
    return "\n".join(lines)
