"""Compare the layouts converted in OUT: model calls, boundary bytes and weights per generated patch, speed.

    python -m bench.layouts [--out OUT] [--report-dir build/bench] [--patches 4] [--backend mil]

One row per layout x precision present in OUT (`published`, `fast`; fp16, int8):
- model calls and bytes across the model boundary per generated patch, and prefill calls for a
  100-token text plus a 10 s prompt: counted by running the layout's own ModelSteps (the generator's
  code) over stand-in packages that return zeros of the declared shapes (`CountingPackages`), so the
  counts are exactly what the generator sends, at no compute cost; bytes are elements x the declared
  dtype's size (what Core ML receives and returns: fp16 floats, int32 positions);
- weight bytes read per generated patch: for every call, the bytes of every weight each op of the
  called function consumes (a weight read by the nine unrolled LocDiT passes counts nine times);
- package sizes, and conversion seconds and peak RSS from OUT/manifest.json;
- generated patches/s of the real packages on `--backend` (the interpreter here), every layout in
  one run, after a short prefill, with the model calls counted again and checked against the counts.
On macOS with `--backend coreml` the same run is Core ML's. Writes layouts.json and layouts.md.
"""
from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from contract import artifacts
from contract.defaults import AUDIO_START_TOKEN, DEFAULT_OUT, PRECISIONS
from contract.layout import LAYOUTS

PROMPT_SECONDS = 10.0
TEXT_TOKENS = 100
DTYPES = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32}
DEQUANTIZE_OPS = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale")
WEIGHT_MIN_ELEMENTS = 1024   # smaller consts are shapes, scalars and norms' gains: not what bandwidth is spent on


# ----------------------------------------------------------------------------- counting without computing
class _Stub:
    """A package function that returns zeros of its declared outputs (any state is a stand-in)."""

    def __init__(self, spec):
        self.spec = spec
        self.inputs = [SimpleNamespace(name=t.name, dtype=DTYPES[t.dtype]) for t in spec.inputs]
        self.outputs = [SimpleNamespace(name=t.name, dtype=DTYPES[t.dtype]) for t in spec.outputs]

    def predict(self, inputs, state=None):
        return {t.name: np.zeros(t.shape, DTYPES[t.dtype]) for t in self.spec.outputs}

    def new_state(self):
        return object()


def counting_packages(layout):
    """`generate.packages.Packages` whose loads return `_Stub`s of `layout`'s declarations."""
    from generate.packages import Packages

    class CountingPackages(Packages):
        def load(self, component, function=None):
            spec = layout[component] if function is None else layout[component].function(function)
            return self._loaded.setdefault(self.key(component, function), _Stub(spec))

    return CountingPackages({name: Path(name) for name in layout.required}, "mil")


def _steps(layout, packages, config: dict, constants: dict):
    from generate.packages import vae_rates
    from generate.synthesizer import STEPS

    return STEPS[layout.name](packages, constants, config, layout, "fp16", vae_rates(config))


def per_patch(steps, patches: int, position: int, config: dict) -> tuple[Counter, Counter, float]:
    """(calls, bytes, seconds) per generated patch over `patches` sample + advance rounds from `position`."""
    shape = (1, config["feat_dim"], config["patch_size"])
    rng = np.random.default_rng(0)
    cond = steps.prefill([1, 2, 3], np.zeros((0, config["patch_size"], config["feat_dim"]), np.float32))
    calls, sent = Counter(steps.packages.calls), Counter(steps.packages.bytes)
    previous = np.zeros(shape, np.float32)
    timesteps = getattr(steps, "fixed_timesteps", None) or config["inference_timesteps"]
    start = time.perf_counter()
    for i in range(patches):
        previous = steps.sample(cond, previous, rng.standard_normal(shape).astype(np.float32), timesteps,
                                config["cfg_value"])
        cond = steps.advance(previous[0].T, position + i)
    seconds = (time.perf_counter() - start) / patches
    return ((steps.packages.calls - calls), (steps.packages.bytes - sent), seconds)


def prefill_calls(steps, config: dict, tokens: int = TEXT_TOKENS, seconds: float = PROMPT_SECONDS) -> tuple[int, int]:
    """(model calls, positions) of one prefill of `tokens` text tokens, the audio-start token and a
    `seconds` prompt (left-padded to whole patches, as the generator pads it)."""
    patch_samples = config["patch_size"] * config["hop_length"]
    n_prompt = -(-int(round(seconds * config["sample_rate"])) // patch_samples)
    before = sum(steps.packages.calls.values())
    steps.prefill(list(range(tokens)) + [AUDIO_START_TOKEN],
                  np.zeros((n_prompt, config["patch_size"], config["feat_dim"]), np.float32))
    return sum(steps.packages.calls.values()) - before, tokens + 1 + n_prompt


# ----------------------------------------------------------------------------- weights read
def weight_bytes_read(function) -> int:
    """Bytes of the weights the ops of a MIL function consume, counted per consuming op."""
    total = 0
    for op in _all_ops(function.operations):
        if op.op_type in DEQUANTIZE_OPS or op.op_type == "const":
            continue
        for var in _inputs(op):
            total += _weight_bytes(var.op)
    return total


def _all_ops(operations):
    for op in operations:
        yield op
        for block in getattr(op, "blocks", ()):
            yield from _all_ops(block.operations)


def _inputs(op):
    for value in op.inputs.values():
        yield from (value if isinstance(value, (list, tuple)) else [value])


def _weight_bytes(producer) -> int:
    if producer is None:
        return 0
    if producer.op_type == "const":
        value = producer.outputs[0].val
        return value.nbytes if isinstance(value, np.ndarray) and value.size >= WEIGHT_MIN_ELEMENTS else 0
    if producer.op_type in DEQUANTIZE_OPS:   # an int8 weight: its data, scales and offsets
        return sum(v.val.nbytes for v in _inputs(producer) if isinstance(getattr(v, "val", None), np.ndarray))
    return 0


def weights_per_call(out: Path, precision: str, layout) -> dict[str, int]:
    """package (or package.function) -> weight bytes read per call."""
    from runtime.mil.loader import read_program

    result = {}
    for spec in (layout[name] for name in layout.required):   # optional packages are not per-patch work
        program = read_program(artifacts.package_path(out, precision, spec.name, layout.name))
        if spec.functions:
            for function in spec.functions:
                result[f"{spec.name}.{function.name}"] = weight_bytes_read(program.functions[function.name])
        else:
            result[spec.name] = weight_bytes_read(next(iter(program.functions.values())))
        del program
    return result


# ----------------------------------------------------------------------------- one row
def present(out: Path) -> list[tuple[str, str]]:
    """(layout, precision) whose every package is in OUT."""
    from contract.layout import component_names

    return [(layout, precision) for layout in LAYOUTS for precision in PRECISIONS
            if all(artifacts.is_package(artifacts.package_path(out, precision, c, layout))
                   for c in component_names(layout))]


def declared_layout(out: Path, layout: str, precision: str, config: dict):
    from contract.layout import declare
    from contract.sizes import sizes_from_generation_config
    from generate.packages import layout_options

    return declare(sizes_from_generation_config(config), layout, **layout_options(out, precision, layout, config))


def conversion(manifest: dict, layout, precision: str) -> dict:
    entries = [manifest.get("artifacts", {}).get(artifacts.artifact_key(precision, c, layout.name)) or {}
               for c in layout.required]
    peaks = [e["peak_rss_mib"] for e in entries if "peak_rss_mib" in e]
    return {"package_mib": {c: round(e.get("size_bytes", 0) / 2**20, 1) for c, e in zip(layout.required, entries)},
            "total_mib": round(sum(e.get("size_bytes", 0) for e in entries) / 2**20, 1),
            "convert_seconds": round(sum(e.get("seconds", 0) for e in entries), 1),
            "convert_peak_rss_mib": max(peaks) if peaks else None}


def count_row(out: Path, layout, precision: str, config: dict, constants: dict, manifest: dict) -> dict:
    steps = _steps(layout, counting_packages(layout), config, constants)
    calls, sent, _ = per_patch(steps, 2, 8, config)
    prefill, positions = prefill_calls(steps, config)
    weights = weights_per_call(out, precision, layout)
    return {"layout": layout.name, "precision": precision,
            "calls_per_patch": sum(calls.values()) / 2, "calls_by_model": {k: v / 2 for k, v in calls.items()},
            "bytes_per_patch": sum(sent.values()) / 2,
            "weight_bytes_per_patch": sum(weights[k] * v for k, v in calls.items()) / 2,
            "prefill_calls": prefill, "prefill_positions": positions, **conversion(manifest, layout, precision)}


def speed(out: Path, layout: str, precision: str, backend: str, patches: int) -> dict:
    """Generated patches/s of the real packages (after a 3-token prefill), and the calls they made."""
    from generate.synthesizer import Synthesizer

    synth = Synthesizer(out, precision=precision, backend=backend, layout=layout)
    synth.steps.preload(False)
    calls, _, seconds = per_patch(synth.steps, patches, 4, synth.config)
    return {"patches_per_second": 1.0 / seconds, "seconds_per_patch": seconds,
            "measured_calls_per_patch": sum(calls.values()) / patches, "backend": synth.steps.packages.backend}


def measure(out: Path, backend: str = "mil", patches: int = 4, progress=print) -> dict:
    from generate.packages import load_constants, read_config

    out = Path(out)
    config = read_config(out)
    constants = load_constants(out, config)
    manifest = artifacts.read_manifest(out) or {}
    rows = []
    for name, precision in present(out):
        progress(f"{name} {precision}: counting, then {patches} patches on {backend}")
        layout = declared_layout(out, name, precision, config)
        row = count_row(out, layout, precision, config, constants, manifest)
        row.update(speed(out, name, precision, backend, patches))
        rows.append(row)
    return {"out": str(out), "patches_timed": patches, "text_tokens": TEXT_TOKENS, "prompt_seconds": PROMPT_SECONDS,
            "goal": {"calls_per_patch": 2, "bytes_per_patch": 16 * 1024, "prefill_calls": 5}, "rows": rows}


# ----------------------------------------------------------------------------- report
def table(result: dict) -> str:
    head = ("| layout | precision | calls / patch | bytes / patch | weights read / patch | prefill calls "
            f"({result['text_tokens']} tok + {result['prompt_seconds']:.0f} s) | packages | convert s | "
            f"convert peak RSS | patches/s ({result['rows'][0]['backend'] if result['rows'] else '-'}) |")
    lines = [head, "|" + "---|" * 10]
    for r in result["rows"]:
        rss = f"{r['convert_peak_rss_mib'] / 1024:.1f} GiB" if r["convert_peak_rss_mib"] else "n/a"
        lines.append(f"| {r['layout']} | {r['precision']} | {r['calls_per_patch']:g} | {_size(r['bytes_per_patch'])} | "
                     f"{_size(r['weight_bytes_per_patch'])} | {r['prefill_calls']} for {r['prefill_positions']} "
                     f"positions | {r['total_mib']:.1f} MiB | {r['convert_seconds']:.0f} | {rss} | "
                     f"{r['patches_per_second']:.3f} |")
    return "\n".join(lines)


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def write(result: dict, report_dir: Path) -> None:
    from contract.atomic import write_json_atomically, write_text_atomically

    report_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomically(report_dir / "layouts.json", result)
    write_text_atomically(report_dir / "layouts.md", f"# Layouts in {result['out']}\n\n{table(result)}\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.layouts", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help="the convert output directory")
    parser.add_argument("--report-dir", type=Path, default=Path("build/bench"))
    parser.add_argument("--patches", type=int, default=4, help="generated patches timed per layout x precision")
    parser.add_argument("--backend", default="mil", help="mil (the interpreter) or coreml (macOS)")
    args = parser.parse_args(argv)
    result = measure(args.out, args.backend, args.patches)
    write(result, args.report_dir)
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
