"""Time to first audio, streaming and not: the whole-utterance decode against the two streaming decoders.

    python -m bench.streaming --out OUT [--precision fp16] [--backend auto] [--patches 63] [--runs 3]

One `Synthesizer` (the packages loaded once, load time reported apart) generates the same utterance
of exactly `--patches` patches (63 = 10.08 s; min_len = max_len, so a random checkpoint's stop head
cannot end it early; no bad-case retry) with the same seed, in each mode:
- whole: `generate` then one whole-decoder decode — the first audio is all of it;
- windowed: `stream` with the whole decoder re-run on the last patches (voxcpm's generate_streaming);
- stream: `stream` with the streaming decoder package, where OUT has it (`convert --stream-decoder`).
Reported per mode (medians over `--runs`): time to first audio (s, patches), generation time, their
fraction (goal <= 0.1 for a 10 s utterance), decoder calls and bytes through the decoder's interface
per patch, chunk interval. Writes build/bench/streaming.json and prints a Markdown table. On macOS
`--backend coreml` gives the absolute figures on the Neural Engine/GPU; elsewhere only the interpreter runs.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from statistics import median

from contract import cli
from contract.defaults import DEFAULT_LAYOUT

TEXT = ("The quick brown fox jumps over the lazy dog, and then it runs far away into the quiet green forest "
        "before night.")
GOAL_FRACTION = 0.1
MODES = ("whole", "windowed", "stream")


def whole_decoder_bytes(synth, patches: int) -> int:
    """Bytes through the whole decoder's interface for one decode of `patches` (its windows' overlap included)."""
    from generate.streaming import frame_bytes
    from generate.vae import plan_windows

    spec = synth.steps.layout["audio_vae_decoder"]
    frames = patches * synth.patch_size
    windows = plan_windows(frames, spec.inputs[0].flexible[2][1], synth.steps.decoder_context)
    return sum(w.end - w.start for w in windows) * frame_bytes(spec)


def run_mode(synth, mode: str, patches: int, seed: int) -> dict:
    settings = dict(min_len=patches, max_len=patches, seed=seed)
    if mode == "whole":
        result = synth.generate(TEXT, retry_badcase=False, **settings)
        stats = result.stats
        seconds = stats["seconds"]["total"]
        calls = stats["model_calls"].get("audio_vae_decoder", 0)
        return {"patches": stats["patches"], "seconds": seconds, "first_audio_s": seconds,
                "first_audio_patches": stats["patches"], "decoder_calls_per_patch": calls / stats["patches"],
                "decoder_bytes_per_patch": whole_decoder_bytes(synth, stats["patches"]) / stats["patches"],
                "chunks": 1, "chunk_interval_s": None}
    stream = synth.stream(TEXT, decoder=mode, **settings)
    with stream:
        for _ in stream:
            pass
    info, stats = stream.stats["stream"], stream.stats
    interval = info["chunk_interval_s"]
    return {"patches": stats["patches"], "seconds": stats["seconds"]["total"],
            "first_audio_s": info["time_to_first_audio_s"], "first_audio_patches": info["first_audio_patches"],
            "decoder_calls_per_patch": info["decoder_calls_per_patch"],
            "decoder_bytes_per_patch": info["decoder_bytes_per_patch"], "chunks": info["chunks"],
            "chunk_interval_s": interval["median"] if interval else None, "decoder": info["decoder"]}


def medians(runs: list[dict]) -> dict:
    row = dict(runs[-1])
    for key in ("seconds", "first_audio_s", "chunk_interval_s"):
        values = [r[key] for r in runs if r[key] is not None]
        row[key] = round(median(values), 3) if values else None
    row["runs"] = len(runs)
    return row


def bench(out: Path, precision: str, backend: str, layout: str, patches: int, runs: int, seed: int) -> dict:
    from generate.synthesizer import Synthesizer

    synth = Synthesizer(out, precision=precision, backend=backend, layout=layout)
    has_stream = any(s.name in synth.packages.paths for s in synth.steps.layout.of_kind("stream_step"))
    modes = [m for m in MODES if m != "stream" or has_stream]
    rows = {mode: medians([run_mode(synth, mode, patches, seed) for _ in range(runs)]) for mode in modes}
    whole = rows["whole"]["seconds"]
    for row in rows.values():
        row["fraction_of_whole"] = round(row["first_audio_s"] / whole, 4) if whole else None
    return {"out": str(out), "precision": precision, "backend": synth.backend, "layout": layout, "patches": patches,
            "audio_seconds": patches * synth.patch_samples / synth.sample_rate, "seed": seed,
            "load_seconds": round(synth.packages.load_seconds, 2), "modes": rows,
            "missing": [] if has_stream else ["stream: OUT has no streaming decoder (convert --stream-decoder)"],
            "goal": {"fraction_of_whole_max": GOAL_FRACTION}}


def table(result: dict) -> str:
    lines = [f"{result['layout']} layout, {result['precision']}, backend {result['backend']}: "
             f"{result['patches']} patches ({result['audio_seconds']:.2f} s), medians of "
             f"{next(iter(result['modes'].values()))['runs']} runs; packages loaded once in "
             f"{result['load_seconds']} s (not counted)", "",
             "| mode | first audio s | patches | generation s | first/whole | decoder calls/patch | "
             "decoder KiB/patch | chunks | chunk interval s |", "|---|---|---|---|---|---|---|---|---|"]
    for mode, r in result["modes"].items():
        interval = "-" if r["chunk_interval_s"] is None else f"{r['chunk_interval_s']:.3f}"
        lines.append(f"| {mode} | {r['first_audio_s']:.3f} | {r['first_audio_patches']} | {r['seconds']:.2f} | "
                     f"{r['fraction_of_whole']:.4f} | {r['decoder_calls_per_patch']:.3f} | "
                     f"{r['decoder_bytes_per_patch'] / 1024:.1f} | {r['chunks']} | {interval} |")
    lines += [f"note: {m}" for m in result["missing"]]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = cli.OneLineParser(prog="python -m bench.streaming", description=__doc__.split("\n")[0])
    cli.add_out(p, "what python -m convert wrote")
    p.add_argument("--precision", default="fp16", choices=("fp16", "int8", "fp32"))
    p.add_argument("--backend", default="auto", choices=("auto", "coreml", "mil"))
    p.add_argument("--layout", default=DEFAULT_LAYOUT,
                   help="published, fast, or all: every layout OUT holds at --precision, one report each "
                        "(streaming-<layout>.json)")
    p.add_argument("--patches", type=int, default=63, help="utterance length in patches (default 63: 10.08 s)")
    p.add_argument("--runs", type=int, default=3, help="runs per mode; medians reported (default 3)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--report-dir", type=Path, default=Path("build/bench"))
    return p


def _parse(argv):
    args = build_parser().parse_args(argv)
    if args.patches < 1 or args.runs < 1:
        raise cli.UsageError(f"--patches {args.patches} / --runs {args.runs}: both must be at least 1")
    return args


def layouts_in(out: Path, precision: str) -> list[str]:
    """The layouts whose packages of `precision` OUT holds (by their whole-utterance decoder)."""
    from contract import artifacts
    from contract.layout import LAYOUTS

    return [name for name in LAYOUTS if artifacts.package_path(out, precision, "audio_vae_decoder", name).exists()]


def _work(args) -> int:
    layouts = layouts_in(Path(args.out), args.precision) if args.layout == "all" else [args.layout]
    if not layouts:
        from generate.errors import GenerationError

        raise GenerationError(f"{args.out} holds no {args.precision} packages of any layout: make convert first")
    args.report_dir.mkdir(parents=True, exist_ok=True)
    for layout in layouts:
        result = bench(Path(args.out), args.precision, args.backend, layout, args.patches, args.runs, args.seed)
        name = "streaming.json" if args.layout != "all" else f"streaming-{layout}.json"
        (args.report_dir / name).write_text(json.dumps(result, indent=2))
        print(table(result) + "\n")
    if sys.platform != "darwin":
        print("note: the absolute Core ML figure needs macOS (--backend coreml); here the interpreter ran")
    return 0


def main(argv=None) -> int:
    from generate.errors import GenerationError

    return cli.run(argv, _parse, _work, expected=(GenerationError,), cannot_write="choose another --report-dir")


if __name__ == "__main__":
    raise SystemExit(main())

