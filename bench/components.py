"""Benchmark the MIL interpreter on each converted component against the torch module it came from.

    python -m bench.components --model CHECKPOINT --packages OUT [--runs 10] [--components a,b]

For each of the six components, the fp16 and int8 packages in OUT run in the interpreter (fp16
compute) and the patched torch module they were converted from runs in eager FP32, on the same
inputs at realistic sizes (5 s of audio into the VAE encoder, 125 latent frames into the decoder,
one patch into feat_encoder, the CFG batch of 2 into locdit_step, the LM steps at position 256 of
512 with filled caches). Each side is timed in blocks of its own (as bench/runtime_step.py
explains, alternating single calls makes both slower on 2 cores), the blocks taking turns a few
times so that a shared machine's changing load moves every side alike; medians are compared.
Prints a Markdown table and writes OUT_DIR/components.json. Needs the full model in memory:
~3.5 GB at full size, and both packages of one component at a time.
"""
import argparse
import gc
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from contract.layout import component_names

from .runtime_step import call_times

log = logging.getLogger("bench.components")

COMPONENTS = component_names("published")  # declared once, in contract/
PRECISIONS = ("fp16", "int8")
DECODER_FRAMES = 125      # 5 s of audio at 44.1 kHz
LM_POSITION_FRACTION = 2  # the LM steps run at max_context / 2, every slot before it filled
GOAL_RATIO = 1.5
ROUNDS = 3                # each side's calls come in this many blocks, taking turns


def torch_components(checkpoint, names, max_context):
    """The patched torch modules the packages were converted from, by component name: each built
    from the published declaration (contract/) by patches.modules.build, as conversion builds it."""
    from checkpoint.loading import load_voxcpm
    from contract.layout import declare
    from patches.apply import patch_model
    from patches.modules import build

    layout = declare(json.loads((Path(checkpoint) / "config.json").read_text()), max_context=max_context)
    model = patch_model(load_voxcpm(checkpoint))
    return {name: build(layout[name], model) for name in names}


def package(out, component, precision):
    return Path(out) / precision / f"{component}.mlpackage"


def max_context(out):
    try:
        return int(json.loads((Path(out) / "manifest.json").read_text())["settings"]["max_context"])
    except (OSError, ValueError, KeyError):
        return 512


def bench_inputs(component, descs, context, seed=0):
    """Inputs at the package's declared shapes (decoder: DECODER_FRAMES), fp16 inputs already rounded
    so that torch and the interpreter see the same values."""
    rng = np.random.default_rng(seed)
    feed = {}
    for d in descs:
        shape = list(d.shape)
        if component == "audio_vae_decoder" and d.name == "latent":
            shape[-1] = DECODER_FRAMES
        if np.dtype(d.dtype).kind == "i":
            feed[d.name] = np.full(shape, context // LM_POSITION_FRACTION, np.int32)
            continue
        scale = 0.1 if component == "audio_vae_encoder" else 0.5
        value = (scale * rng.standard_normal(shape)).astype(np.float32)
        feed[d.name] = value.astype(np.float16).astype(np.float32) if np.dtype(d.dtype) == np.float16 else value
    if component == "locdit_step":
        feed["t"] = np.full(feed["t"].shape, 0.707, np.float16).astype(np.float32)
        feed["dt"] = np.zeros(feed["dt"].shape, np.float32)
    return feed


def _summary(times):
    times = np.array(times)
    return {"median_s": float(np.median(times)), "min_s": float(times.min()), "max_s": float(times.max()),
            "calls": int(times.size)}


def _torch_call(module, feed):
    """Torch eager under the interpreter's allocator setting: with glibc as it is, each big activation
    is a fresh mapping faulted in page by page, and torch's VAE calls took 2.2-2.7x as long (TRIALS.md,
    "runtime · fp16 rounding in C"); the interpreter is measured against torch at its best."""
    import torch

    import runtime

    args = tuple(torch.from_numpy(v) for v in feed.values())

    def call():
        with torch.inference_mode(), runtime.run_allocator():
            return module(*args)

    return call


def bench_component(component, module, out, context, runs, budget_s, rounds=ROUNDS, precisions=PRECISIONS):
    """One table row: torch and the interpreter on each precision's package, on the same inputs.

    Each side runs in blocks of its own (a warm-up call, then timed calls), and the blocks take
    turns, ``rounds`` times, so a machine that gets busier or quieter meanwhile moves every side
    alike. ``runs`` timed calls per side, fewer (one per block at least) once the first block
    shows they would take more than ``budget_s`` (a VAE call takes seconds).
    """
    import runtime
    from runtime.metrics import compare

    sides, loads, feed = {"torch": None}, {}, None
    for precision in precisions:
        path = package(out, component, precision)
        if path.is_dir():
            t0 = time.perf_counter()
            model = runtime.load(path, backend="mil", compute="fp16")
            loads[precision] = time.perf_counter() - t0
            feed = feed if feed is not None else bench_inputs(component, model.inputs, context)
            sides[precision] = (lambda m: lambda: m.predict(feed))(model)
    sides["torch"] = _torch_call(module, feed)
    per_block, times = max(1, -(-runs // rounds)), {side: [] for side in sides}
    for r in range(rounds):
        for side, fn in sides.items():
            times[side] += list(call_times(fn, per_block))
        if r == 0:
            per_call = max(np.median(t) for t in times.values())
            per_block = max(1, min(per_block, int(budget_s / rounds / per_call)))
    row = {"component": component, "inputs": {k: list(v.shape) for k, v in feed.items()}}
    expected = _first(sides["torch"]())
    for side in sides:
        row[side] = _summary(times[side])
    for precision in loads:
        actual = _first(sides[precision]())
        row[precision].update(load_s=loads[precision], ratio=row[precision]["median_s"] / row["torch"]["median_s"],
                              accuracy=compare(actual.reshape(expected.shape), expected))
    return row


def _first(out):
    """The first output: of a torch module (tensor or tuple) or of a predict (dict, program order)."""
    if isinstance(out, dict):
        return np.asarray(next(iter(out.values())))
    first = out[0] if isinstance(out, (tuple, list)) else out
    return first.numpy()


def run(checkpoint, out, out_dir, runs, components=COMPONENTS, budget_s=60.0):
    todo = [c for c in components if any(package(out, c, p).is_dir() for p in PRECISIONS)]
    missing = sorted(set(components) - set(todo))
    if missing:
        log.warning("no packages for %s in %s: skipped (convert first)", ", ".join(missing), out)
    if not todo:
        return None
    context = max_context(out)
    modules = torch_components(checkpoint, todo, context)
    rows, load_before = [], os.getloadavg()[0]
    for component in todo:
        rows.append(bench_component(component, modules.pop(component), out, context, runs, budget_s))
        log.info("%s: %s", component, {p: f"{rows[-1][p]['ratio']:.2f}x" for p in PRECISIONS if p in rows[-1]})
        gc.collect()
    result = {"threads": _threads(), "runs": runs, "rounds": ROUNDS, "max_context": context,
              "goal": {"ratio_max": GOAL_RATIO}, "loadavg_1min": [load_before, os.getloadavg()[0]], "rows": rows}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "components.json").write_text(json.dumps(result, indent=2))
    print(table(result))
    return result


def _threads():
    import torch

    return torch.get_num_threads()


def _ms(t):
    return f"{1e3 * t['median_s']:.1f} ({1e3 * t['min_s']:.0f}–{1e3 * t['max_s']:.0f})"


def table(result):
    head = ["component", "torch eager FP32, ms", "interpreter fp16, ms", "fp16 / torch", "interpreter int8, ms",
            "int8 / torch", "corr fp16 / int8"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["rows"]:
        cells = [row["component"], _ms(row["torch"])]
        corr = []
        for precision in PRECISIONS:
            t = row.get(precision)
            cells += [_ms(t), f"{t['ratio']:.2f}x"] if t else ["-", "-"]
            corr.append(f"{t['accuracy']['corr']:.5f}" if t else "-")
        cells.append(" / ".join(corr))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"\nmedians (min–max) of up to {result['runs']} calls a side, in {result['rounds']} blocks a side "
                 f"taking turns, each after a warm-up call, torch under the interpreter's allocator setting; "
                 f"{result['threads']} torch threads; load average "
                 f"{result['loadavg_1min'][0]:.1f} before, {result['loadavg_1min'][1]:.1f} after; "
                 f"goal: every ratio <= {result['goal']['ratio_max']}x")
    return "\n".join(lines)


def add_arguments(p):
    p.add_argument("--model", default="build/fixtures/full", help="checkpoint the packages were converted from")
    p.add_argument("--packages", type=Path, default=Path("build/full-coreml"),
                   help="conversion output (OUT/fp16, OUT/int8)")
    p.add_argument("--components", default=",".join(COMPONENTS), help="comma-separated subset")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(p)
    p.add_argument("--runs", type=int, default=10, help="timed calls of each (fewer, at least 3, past --budget)")
    p.add_argument("--budget", type=float, default=60.0, help="seconds of timed calls per block")
    p.add_argument("--out", type=Path, default=Path("build/bench"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bench").setLevel(logging.INFO)
    components = tuple(c.strip() for c in args.components.split(",") if c.strip())
    run(args.model, args.packages, args.out, args.runs, components, args.budget)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
