"""The fast layout's torch modules equal voxcpm's own prefill, decode loop and sampler in FP32 (<= 1e-5).

The chunked prefill is driven the way the generator drives it (`contract.fast.prefill_calls`:
several rows per call, a sequence longer than one chunk, a last call shifted back to fit the
context), every state compared with voxcpm's StaticKVCache after the whole prefill and after
every decode step; the fused sampler against `UnifiedCFM.solve_euler` with the same noise.
"""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from checkpoint.loading import load_voxcpm
from contract.fast import prefill_calls
from contract.layout import declare
from patches.apply import patch_model
from patches.fused_diffusion import euler_schedule
from patches.gqa import expand_kv_heads, grouped_attention
from patches.kv_cache import chunk_start, slice_write
from patches.masks import chunk_mask
from patches.modules import build
from tests.helpers import max_rel_error

TOL = 1e-5
CONTEXT, CHUNK = 48, 8


@pytest.fixture(scope="module")
def models(tiny_dir):
    """(unpatched voxcpm, patched copy, the fast layout declared small for speed)."""
    config = json.loads((tiny_dir / "config.json").read_text())
    layout = declare(config, "fast", max_context=CONTEXT, prefill_chunk=CHUNK)
    return load_voxcpm(tiny_dir), patch_model(load_voxcpm(tiny_dir)), layout


def _sequence(original, n_text: int, n_audio: int, seed: int = 0):
    """Text embeddings [1, n_text, H] and prompt patches [1, n_audio, P, D]."""
    gen = torch.Generator().manual_seed(seed)
    hidden = original.config.lm_config.hidden_size
    return torch.randn(1, n_text, hidden, generator=gen), torch.randn(1, n_audio, 4, 64, generator=gen)


@torch.no_grad()
def _voxcpm_prefill(original, text, feats):
    """voxcpm's `_inference` prefill: returns (mu, stop_logit, enc_outputs) and leaves its caches filled."""
    n_text, n_audio = text.shape[1], feats.shape[1]
    audio = torch.cat([torch.zeros(n_text), torch.ones(n_audio)]).view(1, -1, 1)
    feat_embed = original.enc_to_lm_proj(original.feat_encoder(feats))
    combined = torch.cat([text, feat_embed], dim=1)
    for lm in (original.base_lm, original.residual_lm):
        lm.setup_cache(1, 128, "cpu", torch.float32)
    hidden, kv = original.base_lm(inputs_embeds=combined, is_causal=True)
    original.base_lm.kv_cache.fill_caches(kv)
    enc = original.fsq_layer(hidden) * audio + hidden * (1 - audio)
    residual, kv = original.residual_lm(inputs_embeds=enc + audio * combined, is_causal=True)
    original.residual_lm.kv_cache.fill_caches(kv)
    mu = original.lm_to_dit_proj(enc[:, -1]) + original.res_to_dit_proj(residual[:, -1])
    return mu, original.stop_head(original.stop_actn(original.stop_proj(enc[:, -1]))), enc


def _prefill_args(text, feats, start, count):
    """The prefill module's inputs for positions start..start+count-1 (as generate.fast_steps builds them)."""
    n_text, hidden = text.shape[1], text.shape[2]
    text_embeds, chunk_feats, audio = torch.zeros(1, CHUNK, hidden), torch.zeros(1, CHUNK, 4, 64), torch.zeros(1, CHUNK)
    for row, position in enumerate(range(start, start + count)):
        if position < n_text:
            text_embeds[0, row] = text[0, position]
        else:
            chunk_feats[0, row], audio[0, row] = feats[0, position - n_text], 1.0
    return text_embeds, chunk_feats, audio, torch.tensor([start], dtype=torch.int32), torch.tensor([count - 1],
                                                                                                  dtype=torch.int32)


def _states_error(module, original, used: int) -> float:
    worst = 0.0
    for lm in ("base_lm", "residual_lm"):
        cache = getattr(original, lm).kv_cache.kv_cache
        keys, values = module.caches(lm)
        for i, (k, v) in enumerate(zip(keys, values)):
            worst = max(worst, max_rel_error(k[:, :, :used], cache[0, i][:, :, :used]),
                        max_rel_error(v[:, :, :used], cache[1, i][:, :, :used]))
    return worst


def _tail(module, used: int) -> float:
    return max(float(t[:, :, used:].abs().max()) for lm in ("base_lm", "residual_lm") for ts in module.caches(lm)
               for t in ts)


@pytest.mark.parametrize("rows", [1, 3, CHUNK])
def test_chunked_prefill_equals_voxcpm_prefill(models, rows):
    """13 text + 14 prompt positions (> 3 chunks at 8 rows): every state, mu, stop logit, lm hidden."""
    original, patched, layout = models
    text, feats = _sequence(original, 13, 14)
    mu_ref, stop_ref, enc_ref = _voxcpm_prefill(original, text, feats)
    prefill = build(layout["lm"].function("prefill"), patched)
    total = text.shape[1] + feats.shape[1]
    with torch.no_grad():
        for start, count in prefill_calls(total, CHUNK, CONTEXT, rows):
            mu, stop, lm_hidden = prefill(*_prefill_args(text, feats, start, count))
            assert max_rel_error(lm_hidden[:, :count], enc_ref[:, start:start + count]) <= TOL
    assert max_rel_error(mu, mu_ref) <= TOL and max_rel_error(stop, stop_ref) <= TOL
    assert _states_error(prefill, original, total) <= TOL
    assert _tail(prefill, total) == 0  # padding rows write zeros


def test_prefill_shifted_back_at_the_end_of_the_context(models):
    """A sequence ending 2 positions before the context, 5 new rows per call: the last call starts earlier
    and re-sends rows."""
    original, patched, layout = models
    text, feats = _sequence(original, 20, CONTEXT - 22, seed=1)
    calls = prefill_calls(CONTEXT - 2, CHUNK, CONTEXT, rows=5)
    assert calls[-1][0] == CONTEXT - CHUNK and calls[-1][0] < calls[-2][0] + calls[-2][1]   # overlaps
    mu_ref, _, _ = _voxcpm_prefill(original, text, feats)
    prefill = build(layout["lm"].function("prefill"), patched)
    with torch.no_grad():
        for start, count in calls:
            mu, _, _ = prefill(*_prefill_args(text, feats, start, count))
    assert max_rel_error(mu, mu_ref) <= TOL and _states_error(prefill, original, CONTEXT - 2) <= TOL


def test_step_rollout_equals_voxcpm_decode_loop(models):
    """After a prefill, 12 generated patches: mu, stop logit, FSQ'd hidden and every state at every step."""
    original, patched, layout = models
    text, feats = _sequence(original, 9, 5, seed=2)
    _voxcpm_prefill(original, text, feats)
    lm = layout["lm"]
    prefill, step = build(lm.function("prefill"), patched), build(lm.function("step"), patched)
    total = 14
    with torch.no_grad():
        for start, count in prefill_calls(total, CHUNK, CONTEXT):
            prefill(*_prefill_args(text, feats, start, count))
        step.load_state_dict(prefill.state_dict())                  # one state for both functions
        gen = torch.Generator().manual_seed(3)
        for position in range(total, total + 12):
            patch = torch.randn(1, 1, 4, 64, generator=gen)
            mu, stop, lm_hidden = step(patch, torch.tensor([position], dtype=torch.int32))
            embed = original.enc_to_lm_proj(original.feat_encoder(patch))[:, 0]
            hidden = original.fsq_layer(original.base_lm.forward_step(embed, torch.tensor([position])).clone())
            residual = original.residual_lm.forward_step(hidden + embed, torch.tensor([position])).clone()
            assert max_rel_error(lm_hidden, hidden) <= TOL
            assert max_rel_error(mu, original.lm_to_dit_proj(hidden) + original.res_to_dit_proj(residual)) <= TOL
            assert max_rel_error(stop, original.stop_head(original.stop_actn(original.stop_proj(hidden)))) <= TOL
            assert _states_error(step, original, position + 1) <= TOL
            assert _tail(step, position + 1) == 0


def test_step_states_are_the_declared_buffers(models):
    _, patched, layout = models
    lm = layout["lm"]
    step = build(lm.function("step"), patched)
    own = {n: b for n, b in step.named_buffers(recurse=False) if not n.startswith("rope")}
    assert sorted(own) == sorted(t.name for t in lm.states)
    assert all(tuple(b.shape) == (1, 2, CONTEXT, 16) for b in own.values())


@pytest.mark.parametrize("timesteps,cfg", [(10, 2.0), (10, 1.0), (10, 3.5), (4, 2.0)])
def test_fused_diffusion_equals_voxcpm_sampler(models, tiny_dir, timesteps, cfg):
    """The whole sampler in one module vs UnifiedCFM.solve_euler (sway, CFG-Zero*), the same noise."""
    original, patched, _ = models
    layout = declare(json.loads((tiny_dir / "config.json").read_text()), "fast", timesteps=timesteps)
    fused = build(layout["diffusion"], patched)
    gen = torch.Generator().manual_seed(timesteps)
    noise, cond = torch.randn(1, 64, 4, generator=gen), torch.randn(1, 64, 4, generator=gen)
    mu = torch.randn(1, original.config.dit_config.hidden_dim, generator=gen)
    t_span = torch.linspace(1, 0, timesteps + 1)
    t_span = t_span + (torch.cos(torch.pi / 2 * t_span) - 1 + t_span)   # voxcpm's sway, coefficient 1
    with torch.no_grad():
        want = original.feat_decoder.solve_euler(noise, t_span, mu, cond, cfg_value=cfg, use_cfg_zero_star=True)
        got = fused(noise, mu, cond, torch.tensor([cfg]))
    assert max_rel_error(got, want) <= TOL


def test_euler_schedule_is_the_generators():
    """t and dt per step as the host sampler computes them (generate.sampler), the first step zeroed."""
    from generate.sampler import sway_timesteps, zero_init_steps

    schedule = euler_schedule(10, 1.0, 0.04)
    t_span = sway_timesteps(10, 1.0)
    assert [zero for _, _, zero in schedule] == [True] + [False] * 9 and zero_init_steps(10, 0.04) == 1
    assert np.allclose([t for t, _, _ in schedule], t_span[:-1], atol=1e-6)
    assert np.allclose([dt for _, dt, _ in schedule], t_span[:-1] - t_span[1:], atol=1e-6)


def test_grouped_attention_equals_repeated_kv_heads():
    gen = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(1, 8, 5, 16, generator=gen), torch.randn(1, 2, 32, 16, generator=gen),
               torch.randn(1, 2, 32, 16, generator=gen))
    mask = chunk_mask(32, torch.tensor([7], dtype=torch.int32), 5)
    want = F.scaled_dot_product_attention(q, expand_kv_heads(k, 4), expand_kv_heads(v, 4), attn_mask=mask)
    assert max_rel_error(grouped_attention(q, k, v, mask), want) <= 1e-6


def test_chunk_mask_and_slice_write():
    mask = chunk_mask(10, torch.tensor([3], dtype=torch.int32), 2)
    assert mask.shape == (1, 1, 2, 10) and mask[0, 0].sum(dim=-1).tolist() == [4, 5]
    cache, states = torch.zeros(1, 2, 10, 4), torch.randn(1, 2, 3, 4)
    slice_write(cache, chunk_start(torch.tensor([6], dtype=torch.int32), 3, 10), states)
    assert torch.equal(cache[:, :, 6:9], states)
    assert cache[:, :, :6].abs().sum() == 0 and cache[:, :, 9].abs().sum() == 0
