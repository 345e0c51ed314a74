"""How far each layout's packages, composed as the generator runs them, are from the FP32 torch reference.

    python -m bench.composition --model CHECKPOINT --out OUT --prompt WAV --text "..." [--precisions int8,fp16]
                                [--steps 24]

Validation compares each package with torch on torch's own inputs (the published LM steps are
teacher-forced on torch's embeddings). A fused function cannot be: the fast layout's `lm` runs the
feature encoder, both LMs and FSQ in one call, so its errors compose inside it. This measures both
layouts on equal terms, through the generator's own steps (`generate.synthesizer.STEPS`): the same
text and speech prompt (encoded once by the torch VAE), the prefill, then `--steps` teacher-forced
patches (the prompt's own patches fed back), the conditioning (`mu`) and the stop logits after the
prefill and after every step against `reference.torch_steps.TorchSteps`. Writes REPORT_DIR/composition.json
and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from runtime.metrics import compare

from .streaming import layouts_in


def run_steps(steps, tokens: list[int], prompt: np.ndarray, fed: np.ndarray) -> dict:
    """mu [1 + n, dit_hidden] and stop logits [1 + n, 2]: after the prefill, then after each fed patch."""
    conds = [steps.prefill(tokens, prompt)]
    position = len(tokens) + prompt.shape[0]
    for k, patch in enumerate(fed):
        conds.append(steps.advance(patch, position + k))
    return {"mu": np.concatenate([c.mu.reshape(1, -1) for c in conds]).astype(np.float32),
            "stop_logit": np.concatenate([c.stop_logit.reshape(1, -1) for c in conds]).astype(np.float32)}


def errors(actual: dict, expected: dict) -> dict:
    per_position = [compare(a, e) for a, e in zip(actual["mu"], expected["mu"])]
    whole = compare(actual["mu"], expected["mu"])
    return {"mu_after_prefill_rel_l2": per_position[0]["rel_l2"], "mu_after_prefill_corr": per_position[0]["corr"],
            "mu_worst_rel_l2": max(m["rel_l2"] for m in per_position),
            "mu_worst_corr": min(m["corr"] for m in per_position),
            "mu_all_rel_l2": whole["rel_l2"], "mu_all_corr": whole["corr"],
            "stop_logit_rel_l2": compare(actual["stop_logit"], expected["stop_logit"])["rel_l2"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.composition", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True, help="a convert output holding the layouts to compare")
    parser.add_argument("--precisions", default="int8")
    parser.add_argument("--prompt", required=True, help="a speech wav (e.g. validate/data/speech_en_44k.wav)")
    parser.add_argument("--text", required=True, help="the text before the prompt (e.g. the prompt's words)")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--report-dir", default="build/bench")
    args = parser.parse_args(argv)

    from checkpoint.loading import load_voxcpm
    from generate.synthesizer import Synthesizer
    from reference.torch_steps import TorchSteps

    out = Path(args.out)
    precisions = args.precisions.split(",")
    layouts = [name for name in layouts_in(out, precisions[0]) if all(name in layouts_in(out, p) for p in precisions)]
    synths = {(layout, p): Synthesizer(out, precision=p, backend="mil", layout=layout)
              for layout in layouts for p in precisions}
    any_synth = next(iter(synths.values()))
    max_context = min(s.steps.config["max_context"] for s in synths.values())
    reference = TorchSteps(load_voxcpm(args.model), max_context)
    audio, source = any_synth.load_prompt_audio(args.prompt)[0], args.prompt
    patch_samples = any_synth.patch_samples
    audio = audio[: len(audio) // patch_samples * patch_samples]
    prompt = reference.encode_prompt(audio)
    tokens = any_synth.tokenize(args.text) + [reference.config["audio_start_token"]]
    fed = np.resize(prompt[::-1], (args.steps, *prompt.shape[1:]))
    print(f"{len(tokens)} text positions, {prompt.shape[0]} prompt patches ({source}), {args.steps} steps",
          flush=True)
    started = time.time()
    expected = run_steps(reference, tokens, prompt, fed)
    rows = []
    for (layout, precision), synth in synths.items():
        began = time.time()
        row = {"layout": layout, "precision": precision,
               **errors(run_steps(synth.steps, tokens, prompt, fed), expected),
               "seconds": round(time.time() - began, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = {"model": args.model, "out": str(out), "text_positions": len(tokens), "prompt_patches": int(prompt.shape[0]),
              "steps": args.steps, "rows": rows, "wall_seconds": round(time.time() - started, 1)}
    report_dir = Path(args.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "composition.json").write_text(json.dumps(report, indent=1))
    print("\n| layout | precision | mu rel-L2 after prefill | worst position | all positions | mu corr (worst) "
          "| stop_logit rel-L2 |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['layout']} | {r['precision']} | {r['mu_after_prefill_rel_l2']:.3e} | {r['mu_worst_rel_l2']:.3e} "
              f"| {r['mu_all_rel_l2']:.3e} | {r['mu_worst_corr']:.5f} | {r['stop_logit_rel_l2']:.3e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
