"""How much error int8 weights cost by themselves: the floor under any int8 conversion.

    python -m validate.int8_floor --model DIR [--steps 16] [--json FILE]

The int8 packages hold every linear weight as per-output-channel symmetric int8 of its fp16
value (convert/quantize.py). Doing exactly that to the FP32 torch model's weights and computing
in FP32 gives the error that int8 itself costs, with no conversion in between. Run through the
same inputs and teacher-forced LM rollouts that `python -m validate` uses, it says what an int8 gate can
ask for on a given checkpoint: a converted int8 package cannot be closer to FP32 than this, and
one that is much further has a conversion error on top. Random weights and trained weights
differ here (outliers set the int8 scale), so measure on the checkpoint you gate.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from contract.defaults import MAX_CONTEXT

from .gating import Gates
from .records import Recorder, series, summarize
from .stateless import reference_output

QUANTIZED_MODULES = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.ConvTranspose1d)


def fake_quantize_int8(module: torch.nn.Module, min_elements: int) -> int:
    """Round every linear/conv weight with >= min_elements to fp16, then to per-output-channel
    symmetric int8 (scale = max|w| / 127), in place. Returns how many weights were quantized."""
    count = 0
    for m in module.modules():
        if isinstance(m, QUANTIZED_MODULES) and m.weight.numel() >= min_elements:
            w = m.weight.data.half().float()
            out_axis = 1 if isinstance(m, torch.nn.ConvTranspose1d) else 0
            reduce = tuple(d for d in range(w.dim()) if d != out_axis)
            scale = w.abs().amax(dim=reduce, keepdim=True) / 127.0
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
            m.weight.data = torch.clamp(torch.round(w / scale), -127, 127) * scale
            count += 1
    return count


def _copy_caches(src, dst) -> None:
    for a, b in ((src.model.base_lm, dst.model.base_lm), (src.model.residual_lm, dst.model.residual_lm)):
        b.kv_cache.kv_cache.copy_(a.kv_cache.kv_cache)


def _caches_as_outputs(steps, spec) -> dict:
    """A reference's current caches under the converted step's declared output names."""
    return {spec.caches.output_name(kind, i): c.numpy() for (kind, i), c in zip(spec.caches.slots(), steps.caches(spec))}


@torch.no_grad()
def measure(model_dir: str, steps: int, max_context: int = MAX_CONTEXT, revision: str | None = None,
            progress: bool = True, decoder_lengths=(4, 37, 125)) -> dict:
    from checkpoint.loading import load_voxcpm
    from contract.layout import declare
    from contract.components import STATELESS
    from convert.quantize import WEIGHT_THRESHOLD
    from patches.weight_norm import remove_weight_norm

    from . import cases as inp
    from .references import TorchReference

    model = load_voxcpm(model_dir, revision)
    quantized = load_voxcpm(model_dir, revision)  # weight-normed modules cannot be deep-copied
    remove_weight_norm(quantized.audio_vae)  # one weight per conv, as in the converted VAE
    n_weights = fake_quantize_int8(quantized, WEIGHT_THRESHOLD)
    ref, qref = TorchReference(model), TorchReference(quantized)
    raw = json.loads((Path(model.checkpoint_dir) / "config.json").read_text(encoding="utf-8"))
    speech, _ = inp.speech_clip(ref.sample_rate)
    prompt = ref.prompt_patches(speech)
    prompt_embeds = ref.embed_patches(prompt)
    recorder = Recorder(Gates())  # records only: the floor is what gates are set from
    layout = declare(raw, max_context=max_context)
    context = inp.CaseContext(ref, speech, prompt, prompt_embeds, tuple(decoder_lengths))
    for spec in layout.of_kind(STATELESS):
        for case in tqdm(inp.cases_for(spec, context), desc=f"int8 floor {spec.name}", disable=not progress):
            expected = reference_output(ref, spec, case.arrays)
            actual = reference_output(qref, spec, case.arrays)
            recorder.add(spec.name, "int8", spec.primary_output, case.label, actual, expected, gated=False)
    _lm_rollouts(model, quantized, ref, prompt_embeds, steps, layout, recorder, progress)
    return {"model": str(model_dir), "steps": steps, "quantized_weights": n_weights,
            "rows": summarize(recorder.records, recorder.gates), "series": series(recorder.records)}


def _lm_rollouts(model, quantized, ref, prompt_embeds, steps, layout, recorder, progress) -> None:
    from contract.components import LM_STEP

    from .references import LMStepReference, _t
    from .rollout import compare_caches, plan_rollouts

    max_context = layout.max_context
    lm_steps = {spec.name: spec for spec in layout.of_kind(LM_STEP)}
    rollouts = plan_rollouts(ref, prompt_embeds, steps, max_context)
    fp32, int8 = LMStepReference(model, max_context), LMStepReference(quantized, max_context)
    bar = tqdm(total=sum(r.end for r in rollouts), desc="int8 floor LM rollouts", unit="pos", disable=not progress)
    for rollout in rollouts:
        fp32.reset()
        int8.reset()
        if rollout.start:
            fp32.prefill(rollout.embeds[:rollout.start], rollout.is_audio[:rollout.start])
            bar.update(rollout.start)
        _copy_caches(fp32, int8)  # the converted step joins with the reference's caches too
        for position in range(rollout.start, rollout.end):
            expected = fp32.step(rollout.embeds[position], position, bool(rollout.is_audio[position]))
            pos = torch.tensor([position])
            for spec in lm_steps.values():  # teacher-forced: each LM gets the reference's input, as in the rollouts
                embed = _t(expected[spec.name][spec.embed_input])
                actual = getattr(quantized, spec.parts[0]).forward_step(embed, pos).numpy()
                recorder.add(spec.name, "int8", spec.primary_output, rollout.label, actual.reshape(-1),
                             expected[spec.name][spec.primary_output].reshape(-1), step=position, gated=False)
                worst, *_ = compare_caches(_caches_as_outputs(int8, spec), fp32.caches(spec), spec, position)
                recorder.add(spec.name, "int8", "caches", rollout.label, None, None, step=position, metrics=worst,
                             gated=False)
            bar.update()
    bar.close()


def table(result: dict) -> str:
    lines = ["| component | output | corr (min) | rel-L2 (max) | max-abs | worst at |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        worst = r["worst"]["case"] + ("" if r["worst"]["step"] is None else f", position {r['worst']['step']}")
        lines.append(f"| {r['name']} | {r['output']} | {r['corr']:.6f} | {r['rel_l2']:.3g} | "
                     f"{r['max_abs']:.3g} | {worst} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from checkpoint.loading import CheckpointError
    from contract.cli import OneLineParser, UsageError, fail

    parser = OneLineParser(prog="python -m validate.int8_floor", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint directory or Hugging Face id")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--steps", type=int, default=16, help="rollout steps per start position (default 16)")
    parser.add_argument("--max-context", type=int, default=MAX_CONTEXT,
                        help=f"the converted max context (default {MAX_CONTEXT})")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    try:
        args = parser.parse_args(argv)
        if args.steps < 1 or args.max_context < 2:
            raise UsageError(f"--steps must be >= 1 and --max-context >= 2, got {args.steps} and {args.max_context}")
    except UsageError as exc:
        return fail(str(exc))
    try:
        result = measure(args.model, args.steps, args.max_context, args.revision, progress=sys.stderr.isatty())
    except CheckpointError as exc:
        return fail(str(exc).splitlines()[0])
    print(f"int8 floor ({result['quantized_weights']} weights fake-quantized, {args.steps} steps per rollout)")
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
