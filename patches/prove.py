"""`python -m patches.prove MODEL [--json FILE]`: measure every patch against the original.

Loads the checkpoint twice — once untouched, once patched — feeds both the same inputs and
prints the max relative error (max |patched - original| / max |original|) per component as a
Markdown table. The tests run the same comparisons on the tiny fixture; this measures any
checkpoint, the full-size one included.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

TOLERANCE = 1e-5


def _rel(actual, expected) -> float:
    return float((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-12))


def _rollout_error(original_lm, step, prefill, steps) -> tuple[float, float]:
    """(max rel error of hiddens, of caches) after prefill + steps through both implementations."""
    from .lm import empty_caches

    original_lm.setup_cache(1, step.max_context, "cpu", torch.float32)
    _, kv = original_lm(prefill, is_causal=True)
    original_lm.kv_cache.fill_caches(kv)
    expected = [original_lm.forward_step(s, torch.tensor([original_lm.kv_cache.step()])).clone() for s in steps]
    k, v = empty_caches(step.lm, step.max_context)
    n = len(k)
    tokens = [prefill[:, i] for i in range(prefill.shape[1])] + steps
    hidden_err = 0.0
    for position, embed in enumerate(tokens):
        out = step.lm_step(embed, torch.tensor([position], dtype=torch.int32), k + v)
        hidden, caches = out
        k, v = caches[:n], caches[n:]
        if position >= prefill.shape[1]:
            hidden_err = max(hidden_err, _rel(hidden, expected[position - prefill.shape[1]]))
    used = len(tokens)
    cache = original_lm.kv_cache.kv_cache
    cache_err = max(max(_rel(k[i][:, :, :used], cache[0, i][:, :, :used]),
                        _rel(v[i][:, :, :used], cache[1, i][:, :, :used])) for i in range(n))
    return hidden_err, cache_err


@torch.no_grad()
def measure(source) -> list[dict]:
    from .apply import patch_model
    from .modules import AudioVAEDecoder, AudioVAEEncoder, BaseLMStep, FeatEncoder, LocDiTStep, ResidualLMStep
    from checkpoint.loading import load_voxcpm

    torch.manual_seed(0)
    original, patched = load_voxcpm(source), patch_model(load_voxcpm(source))
    hidden, dit = original.config.lm_config.hidden_size, original.config.dit_config.hidden_dim
    rows = []

    def row(name, err, inputs):
        rows.append({"component": name, "max_rel_error": err, "inputs": inputs, "passed": err <= TOLERANCE})

    audio, latent, feat = 0.3 * torch.randn(1, 1, 7056 * 4), torch.randn(1, 64, 40), torch.randn(1, 3, 4, 64)
    row("audio_vae_encoder", _rel(AudioVAEEncoder(patched)(audio), original.audio_vae.encode(audio, 44100)), "0.64 s noise")
    row("audio_vae_decoder", _rel(AudioVAEDecoder(patched)(latent), original.audio_vae.decode(latent)), "40 random frames")
    row("feat_encoder", _rel(FeatEncoder(patched)(feat), original.feat_encoder(feat)), "3 random patches")
    x, cond, mu = torch.randn(2, 64, 4), torch.randn(2, 64, 4), torch.randn(2, dit)
    mu[1] = 0
    t, dt = torch.tensor([0.707, 0.707]), torch.zeros(2)
    row("locdit_step", _rel(LocDiTStep(patched)(x, mu, t, cond, dt), original.feat_decoder.estimator(x, mu, t, cond, dt)),
        "t = 0.707, CFG batch")
    prefill, steps = torch.randn(1, 37, hidden), [torch.randn(1, hidden) for _ in range(8)]
    for name, lm, make in (("base_lm_step", original.base_lm, BaseLMStep), ("residual_lm_step", original.residual_lm,
                                                                          ResidualLMStep)):
        hidden_err, cache_err = _rollout_error(lm, make(patched, 512), prefill, steps)
        row(f"{name} hidden", hidden_err, "prefill 37 + 8 steps")
        row(f"{name} caches", cache_err, "prefill 37 + 8 steps")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m patches.prove", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="Hugging Face id or checkpoint directory")
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    from checkpoint.loading import CheckpointError

    start = time.time()
    try:
        rows = measure(args.model)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("| component | max rel. error | inputs | ≤ 1e-5 |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['component']} | {r['max_rel_error']:.2e} | {r['inputs']} | {'yes' if r['passed'] else 'NO'} |")
    print(f"\n{args.model}: {sum(r['passed'] for r in rows)}/{len(rows)} within 1e-5 in {time.time() - start:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=2)
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
