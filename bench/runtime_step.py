"""Benchmark the MIL interpreter on a full-size decoder step.

    python -m bench.runtime_step [--layers 24] [--runs 15] [--out build/bench]

Builds a generic decoder step in torch (24 layers, hidden 1024, FFN 4096,
16 query / 2 KV heads of 64, RMSNorm, RoPE gathered at an int32 position,
functional KV cache [1,2,512,64] per layer scattered at the position),
with random weights; converts it (mlprogram, macOS14, FP16), saves it
under build/bench/, then times the interpreter (fp16 mode) against torch
eager FP32 (medians compared) and checks accuracy. Prints a Markdown table and writes
build/bench/runtime.json. Not a test: it takes a few minutes.
"""
import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("bench.runtime_step")

FULL = dict(layers=24, hidden=1024, ffn=4096, q_heads=16, kv_heads=2, head_dim=64, max_pos=512)


def build_and_convert(cfg, path):
    import coremltools as ct
    import torch

    from .torch_models import DecoderStep

    torch.manual_seed(0)
    model = DecoderStep(cfg, write="scatter").eval()
    example = example_inputs(cfg, position=7)
    if not path.exists():
        t0 = time.perf_counter()
        traced = torch.jit.trace(model, tuple(torch.from_numpy(v) for v in example.values()))
        names = list(example)
        inputs = [ct.TensorType(n, shape=v.shape, dtype=np.int32 if v.dtype == np.int32 else None) for n, v in example.items()]
        mlmodel = ct.convert(traced, inputs=inputs, convert_to="mlprogram", minimum_deployment_target=ct.target.macOS14,
                             compute_precision=ct.precision.FLOAT16, skip_model_load=True)
        mlmodel.save(str(path))
        log.info("converted %d inputs in %.1f s -> %s", len(names), time.perf_counter() - t0, path)
    return model


def example_inputs(cfg, position, seed=1):
    rng = np.random.default_rng(seed)
    feed = {"x": rng.standard_normal((1, 1, cfg["hidden"])).astype(np.float32),
            "position": np.array([position], np.int32)}
    shape = (1, cfg["kv_heads"], cfg["max_pos"], cfg["head_dim"])
    for i in range(2 * cfg["layers"]):
        feed[f"cache_{i}"] = (0.5 * rng.standard_normal(shape)).astype(np.float32)
    return feed


def call_times(fn, runs):
    """Seconds per call of ``fn`` after one warm-up call.

    Each side is timed in its own block: alternating torch and numpy calls makes
    each wait for the other's spinning BLAS/OpenMP threads (both ~2x slower on 2 cores).
    """
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return np.array(times)


def run(cfg, out_dir, runs):
    import torch

    import runtime
    from runtime.metrics import compare

    out_dir.mkdir(parents=True, exist_ok=True)
    tag = "decoder" if cfg == FULL else "decoder_" + "_".join(f"{k}{v}" for k, v in cfg.items())
    path = out_dir / f"{tag}.mlpackage"
    model = build_and_convert(cfg, path)

    t0 = time.perf_counter()
    mil = runtime.load(path, backend="mil", compute="fp16")
    load_s = time.perf_counter() - t0

    feed = example_inputs(cfg, position=min(137, cfg["max_pos"] - 1))  # a filled cache, mid-range
    targs = tuple(torch.from_numpy(v) for v in feed.values())
    with torch.inference_mode():
        ref = model(*targs)
        torch_t = call_times(lambda: model(*targs), runs)
    mil_t = call_times(lambda: mil.predict(feed), runs)
    out = mil.predict(feed)

    names = [d.name for d in mil.outputs]
    hidden = compare(out[names[0]], ref[0].numpy())
    caches = [compare(out[n], r.numpy()) for n, r in zip(names[1:], ref[1:])]
    result = {
        "config": cfg, "threads": torch.get_num_threads(), "runs": runs,
        "load_s": load_s, "mil_step_s": float(np.median(mil_t)), "mil_step_min_s": float(mil_t.min()),
        "torch_step_s": float(np.median(torch_t)), "torch_step_min_s": float(torch_t.min()),
        "ratio": float(np.median(mil_t) / np.median(torch_t)),
        "hidden": hidden, "cache_min_corr": min(c["corr"] for c in caches),
        "cache_max_rel_l2": max(c["rel_l2"] for c in caches),
        "goal": {"ratio_max": 1.5, "load_s_max": 5.0},
    }
    (out_dir / "runtime.json").write_text(json.dumps(result, indent=2))
    print(table(result))
    return result


def table(r):
    h = r["hidden"]
    rows = [
        ("interpreter (fp16) step, median", f"{1e3 * r['mil_step_s']:.1f} ms (min {1e3 * r['mil_step_min_s']:.1f})"),
        ("torch eager FP32 step, median", f"{1e3 * r['torch_step_s']:.1f} ms (min {1e3 * r['torch_step_min_s']:.1f})"),
        ("ratio of medians interpreter / torch", f"{r['ratio']:.2f}x (goal <= 1.5x)"),
        ("interpreter load", f"{r['load_s']:.2f} s (goal <= 5 s)"),
        ("hidden corr / rel-L2 / max-abs", f"{h['corr']:.7f} / {h['rel_l2']:.2e} / {h['max_abs']:.2e}"),
        ("caches min corr / max rel-L2", f"{r['cache_min_corr']:.7f} / {r['cache_max_rel_l2']:.2e}"),
    ]
    lines = ["| metric | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=FULL["layers"])
    p.add_argument("--runs", type=int, default=15, help="timed calls of each")
    p.add_argument("--out", type=Path, default=Path("build/bench"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("runtime").setLevel(logging.INFO)
    cfg = dict(FULL, layers=args.layers)
    run(cfg, args.out, args.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
