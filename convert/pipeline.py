"""The whole conversion: checkpoint -> OUT/{fp16,int8,fp32}/*.mlpackage, constants, manifest.

Memory: the model is loaded once (3.2 GB fp32 at full size) only if something must be built;
components are converted one at a time, smallest first, and each part of the model is dropped
as soon as no later component reads it. INT8 packages are quantized from the saved fp16
package, after the torch module and the fp16 program are freed. FP32 packages (a reference build
for parity checks, only on request) are converted from the same trace with FLOAT32 compute.
"""
from __future__ import annotations

import gc
import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .artifacts import recover, remove, tree_sha256, tree_size, write_atomically
from .interface import COMPONENTS, MAX_CONTEXT, interfaces
from .manifest import Manifest, inputs_key, toolkit_info, weights_sha256

PRECISIONS = ("fp16", "int8", "fp32")
CONSTANTS = "constants"
COMPILE_SKIPPED = "compile skipped: needs macOS"


class ConvertError(Exception):
    """An expected failure; the message is one line: `<problem>: <fix>`."""


@dataclass
class Settings:
    model: str
    out: Path
    precisions: tuple[str, ...] = ("int8",)
    components: tuple[str, ...] = COMPONENTS
    revision: str | None = None
    force: bool = False
    max_context: int = MAX_CONTEXT


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
    rows: list = field(default_factory=list)
    model: object = None

    def key(self, component: str, precision: str) -> str:
        return inputs_key(self.weights, self.toolkit, component=component, precision=precision,
                          max_context=self.settings.max_context)


# ----------------------------------------------------------------------------- preparation
def prepare_out(out: Path) -> Path:
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConvertError(f"cannot write to {out} ({exc.strerror or exc}): "
                           f"choose a writable --out or fix its permissions") from None
    for sub in (out, *(out / p for p in PRECISIONS)):
        recover(sub)
    return out


def read_raw_config(checkpoint: Path) -> dict:
    from patches.loading import read_config

    read_config(checkpoint)  # validates; raises CheckpointError with a one-line message
    return json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))


def open_context(settings: Settings) -> Context:
    from patches.loading import resolve_source

    out = prepare_out(settings.out)
    checkpoint = resolve_source(settings.model, settings.revision)
    raw_config = read_raw_config(checkpoint)
    toolkit = toolkit_info()
    manifest = Manifest(out)
    source = {"model": settings.model, "revision": settings.revision, "checkpoint_dir": str(checkpoint.resolve())}
    context = Context(settings, checkpoint, raw_config, {}, toolkit, manifest)
    # Hashing 3.2 GB takes ~6 s: when the model must be loaded anyway, load it meanwhile
    # (sha256 and file reads release the GIL, and there are two cores).
    with ThreadPoolExecutor(max_workers=1) as pool:
        hashing = pool.submit(weights_sha256, checkpoint)
        if surely_needs_model(settings, manifest):
            load_model(context)
        context.weights = hashing.result()
    source["weights_sha256"] = context.weights
    source["config"] = raw_config
    manifest.set_source(source, toolkit)
    manifest.data["settings"] = {"max_context": settings.max_context}
    return context


def surely_needs_model(settings: Settings, manifest: Manifest) -> bool:
    """True when some requested artifact has never been built here (or --force): no hash can skip it."""
    wanted = [f"{p}/{c}" for p in settings.precisions for c in settings.components] + [CONSTANTS]
    return settings.force or any(manifest.artifact(name) is None for name in wanted)


def artifact_path(out: Path, component: str, precision: str) -> Path:
    return Path(out) / precision / f"{component}.mlpackage"


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
    """Loaded and patched once, on first need."""
    if context.model is None:
        from patches.apply import patch_model
        from patches.loading import load_voxcpm

        start = time.time()
        print(f"loading {context.checkpoint} ...", file=sys.stderr, flush=True)
        context.model = patch_model(load_voxcpm(context.checkpoint))
        print(f"loaded in {time.time() - start:.1f} s", file=sys.stderr, flush=True)
    return context.model


# ----------------------------------------------------------------------------- constants
def build_constants(context: Context) -> None:
    from .constants import extract_arrays, full_config, write_bin_dir, write_npy_dir

    out = context.settings.out
    paths = [out / "constants", out / "constants_bin"]
    key = inputs_key(context.weights, context.toolkit, component=CONSTANTS, max_context=context.settings.max_context)
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
                                        "size_bytes": size, "seconds": round(seconds, 1)})
    context.rows.append(Row(CONSTANTS, "fp32+fp16", size / 2**20, seconds, "built"))


# ----------------------------------------------------------------------------- components
def _save(mlmodel, final: Path, component: str, precision: str) -> Path:
    mlmodel.short_description = f"VoxCPM 1.5 {component} ({precision} weights)"
    mlmodel.user_defined_metadata["voxcpm.component"] = component
    mlmodel.user_defined_metadata["voxcpm.precision"] = precision
    return write_atomically(final, lambda tmp: mlmodel.save(str(tmp)))


def _compile(package: Path) -> str:
    """Compile beside the package where Core ML exists; elsewhere say why not."""
    if sys.platform != "darwin":
        return COMPILE_SKIPPED
    from coremltools.models.utils import compile_model

    final = package.with_suffix(".mlmodelc")
    write_atomically(final, lambda tmp: compile_model(str(package), str(tmp)))
    return final.name


def _record(context: Context, component: str, precision: str, package: Path, key: str, seconds: float,
            extra: dict | None = None) -> None:
    from .check_specs import spec_interface

    size = tree_size(package)
    entry = {"path": str(package.relative_to(context.settings.out)), "inputs_key": key,
             "sha256": tree_sha256(package), "size_bytes": size, "seconds": round(seconds, 1),
             "interface": spec_interface(package), "compiled": _compile(package), **(extra or {})}
    context.manifest.record(f"{precision}/{component}", entry)
    context.rows.append(Row(component, precision, size / 2**20, seconds, "built"))


def _progress(component: str, stages: int):
    from tqdm import tqdm

    return tqdm(total=stages, desc=f"{component:<18}", unit="stage", file=sys.stderr, leave=True, disable=False,
                bar_format="{desc} {bar:20} {n_fmt}/{total_fmt} {postfix} [{elapsed}]")


def convert_fp32(context: Context, component: str, iface) -> None:
    """The FP32 reference package: the same trace, FLOAT32 compute, fp32 I/O (`iface` declares it)."""
    from .components import CONVERTERS

    bar = _progress(component, 2)
    try:
        start = time.time()
        bar.set_postfix_str("trace + convert fp32")
        mlmodel = CONVERTERS[component](load_model(context), iface)
        bar.update()
        bar.set_postfix_str("save fp32")
        final = _save(mlmodel, artifact_path(context.settings.out, component, "fp32"), component, "fp32")
        del mlmodel
        gc.collect()
        bar.update()
        _record(context, component, "fp32", final, context.key(component, "fp32"), time.time() - start)
        bar.set_postfix_str("done")
    finally:
        bar.close()


def convert_component(context: Context, component: str, todo: list[str], iface) -> None:
    """Build the fp16 program (or reuse the current fp16 package) and the requested precisions."""
    from .components import CONVERTERS
    from .quantize import quantize_int8, weight_report

    out = context.settings.out
    fp16_final = artifact_path(out, component, "fp16")
    work = out / f".work-{os.getpid()}"
    # int8 alone still needs an fp16 program: the current fp16 package if there is one
    build_fp16 = "fp16" in todo or ("int8" in todo and not is_current(
        context, f"fp16/{component}", context.key(component, "fp16"), [fp16_final]))
    bar = _progress(component, 2 * build_fp16 + 2 * ("int8" in todo))
    try:
        source = fp16_final
        if build_fp16:
            start = time.time()
            bar.set_postfix_str("trace + convert")
            mlmodel = CONVERTERS[component](load_model(context), iface)
            bar.update()
            bar.set_postfix_str("save fp16")
            source = fp16_final if "fp16" in todo else work / f"{component}.mlpackage"
            _save(mlmodel, source, component, "fp16")
            del mlmodel
            gc.collect()
            bar.update()
            if "fp16" in todo:
                _record(context, component, "fp16", source, context.key(component, "fp16"), time.time() - start)
        if "int8" in todo:
            start = time.time()
            bar.set_postfix_str("quantize int8")
            quantized = quantize_int8(source)
            bar.update()
            bar.set_postfix_str("save int8")
            final = _save(quantized, artifact_path(out, component, "int8"), component, "int8")
            bar.update()
            from .quantize import load_program

            # the program quantization just built, else re-read from the package
            report = weight_report(getattr(quantized, "_mil_program", None) or load_program(final))
            del quantized
            gc.collect()
            _record(context, component, "int8", final, context.key(component, "int8"), time.time() - start,
                    {"weights": report})
        bar.set_postfix_str("done")
    finally:
        bar.close()
        remove(work)


def plan(context: Context) -> dict[str, list[str]]:
    """component -> precisions to build (in conversion order)."""
    from .components import ORDER

    todo = {}
    for component in ORDER:
        if component not in context.settings.components:
            continue
        needed = []
        for precision in context.settings.precisions:
            name, key = f"{precision}/{component}", context.key(component, precision)
            if is_current(context, name, key, [artifact_path(context.settings.out, component, precision)]):
                entry = context.manifest.artifact(name)
                context.rows.append(Row(component, precision, entry["size_bytes"] / 2**20, 0.0, "up to date"))
            else:
                needed.append(precision)
        if needed:
            todo[component] = needed
    return todo


def run(settings: Settings) -> list[Row]:
    from .components import ORDER, drop_parts, quiet_coremltools

    context = open_context(settings)
    todo = plan(context)
    build_constants(context)
    if todo:
        quiet_coremltools()
        declared = interfaces(context.raw_config, settings.max_context)
        declared32 = interfaces(context.raw_config, settings.max_context, float_dtype="fp32")
        model = load_model(context)
        model.base_lm.embed_tokens = None  # in constants already; the LM step takes embeddings as input
        remaining = [c for c in ORDER if c in todo]
        while remaining:
            component = remaining.pop(0)
            if "fp32" in todo[component]:
                convert_fp32(context, component, declared32[component])
            if set(todo[component]) - {"fp32"}:
                convert_component(context, component, todo[component], declared[component])
            drop_parts(model, component, remaining)
            gc.collect()
    context.model = None
    gc.collect()
    context.manifest.save()
    return context.rows


def summary(rows: list[Row], seconds: float) -> str:
    lines = [f"{'component':<18} {'precision':<10} {'size MiB':>9} {'seconds':>8}  status",
             "-" * 58]
    for row in rows:
        lines.append(f"{row.component:<18} {row.precision:<10} {row.size_mib:>9.1f} {row.seconds:>8.1f}  {row.status}")
    lines.append(f"total {seconds:.1f} s")
    return "\n".join(lines)
