"""The host-side arrays of OUT/constants against the reference: the text embeddings and the three projections.

The generator applies embed_tokens, enc_to_lm_proj, lm_to_dit_proj and res_to_dit_proj on the
host, from OUT/constants/*.npy (float32); apps read OUT/constants_bin/*.bin, their fp16 rounding.
No package holds them, so the component checks cannot see them: a LoRA merge that leaves out the
projections shows only here. Each projection is applied as the generator applies it (x·Wᵀ + b in
float32) to what it meets in generation — the feat_encoder outputs of the speech clip's patches,
the base and residual LM hiddens of a real prefill — plus random rows of the same scale, and
compared with the reference module (voxcpm's own; LoRALinear live under an adapter).
"""
from __future__ import annotations

import numpy as np

from contract import artifacts
from contract.artifacts import PROJECTIONS
from runtime.metrics import compare

from . import cases as inp

# fp32 arrays in fp32 arithmetic against fp32 torch: only summation order differs (a LoRA merge
# against the live layers: 1.2e-7 on the tiny fixture); a projection left out of the merge: ~1e-1
FP32_REL_L2 = 1e-5
COMPONENT = "constants"


def projection_inputs(ctx: inp.CaseContext) -> dict[str, tuple[np.ndarray, str]]:
    """{projection: (inputs [n, in], what they are)}: real ones and as many random rows at their scale."""
    hidden, residual = ctx.ref.prefill_hiddens(*inp.prefill(ctx))
    real = {"enc_to_lm_proj": (ctx.ref.encode_patches(ctx.prompt), "speech patches' feat_encoder outputs"),
            "lm_to_dit_proj": (hidden, "base LM hiddens of a prefill"),
            "res_to_dit_proj": (residual, "residual LM hiddens of a prefill")}
    rng = np.random.default_rng(inp.SEED + 4)
    inputs = {}
    for name, (x, what) in real.items():
        noise = (float(x.std()) or 1.0) * rng.standard_normal(x.shape)
        inputs[name] = (np.concatenate([x, noise]).astype(np.float32), f"{len(x)} {what} + {len(x)} random rows")
    return inputs


def _record(recorder, name: str, metrics: dict, what: str) -> None:
    passed = metrics["finite"] and metrics["rel_l2"] <= FP32_REL_L2
    recorder.check(COMPONENT, "fp32", f"{name} on the host equals the reference", passed,
                   f"rel-L2 {metrics['rel_l2']:.2e}, corr {metrics['corr']:.7f} on {what} (at most {FP32_REL_L2:g})")


def _bin_is_rounding(recorder, out, name: str, array: np.ndarray) -> None:
    path = artifacts.constants_bin_dir(out) / f"{name}.bin"
    if not path.is_file():
        recorder.check(COMPONENT, "fp16", f"constants_bin/{name}.bin is constants/{name}.npy in fp16", False,
                       f"{path} is missing")
        return
    stored, rounded = np.fromfile(path, dtype="<f2"), array.astype("<f2").ravel()
    if stored.size != rounded.size:
        detail = f"{stored.size} values, not {rounded.size}"
    else:
        detail = f"{int(np.sum(stored != rounded))} of {rounded.size} values differ"
    same = stored.size == rounded.size and np.array_equal(stored, rounded)
    recorder.check(COMPONENT, "fp16", f"constants_bin/{name}.bin is constants/{name}.npy in fp16", same,
                   "bit for bit" if same else detail)


def check_constants(out, ctx: inp.CaseContext, recorder) -> str:
    """Record the checks; returns what was compared (for the report's inputs)."""
    directory = artifacts.constants_dir(out)
    if not directory.is_dir():
        return f"skipped: {out} has no constants/"
    arrays = {}
    for name in artifacts.ARRAYS:
        path = directory / f"{name}.npy"
        if not path.is_file():
            recorder.check(COMPONENT, "fp32", f"constants/{name}.npy exists", False, f"{path} is missing")
            continue
        arrays[name] = np.load(path)
        _bin_is_rounding(recorder, out, name, arrays[name])
    if "embed_tokens" in arrays:  # never adapted: the model's own table, bit for bit
        table = ctx.ref.embedding_table()
        same = arrays["embed_tokens"].shape == table.shape and np.array_equal(arrays["embed_tokens"], table)
        recorder.check(COMPONENT, "fp32", "embed_tokens is the model's embedding table", same,
                       "bit for bit" if same else f"{arrays['embed_tokens'].shape} vs {table.shape}, or other values")
    for name, (x, what) in projection_inputs(ctx).items():
        if f"{name}_w" in arrays and f"{name}_b" in arrays:
            actual = x @ arrays[f"{name}_w"].T + arrays[f"{name}_b"]
            _record(recorder, name, compare(actual, ctx.ref.project(name, x)), what)
    return f"OUT/constants against the reference on real and random inputs (fp32, rel-L2 ≤ {FP32_REL_L2:g})"
