"""Every patched module equals its unpatched voxcpm original in FP32 (max relative error <= 1e-5)."""
import pytest
import torch

from patches.apply import patch_audio_vae, patch_minicpm, patch_model
from patches.modules import AudioVAEDecoder, AudioVAEEncoder, BaseLMStep, FeatEncoder, LocDiTStep, \
    ResidualLMStep
from patches.kv_cache import inplace_write, scatter_write
from patches.lm import empty_caches
from checkpoint.loading import load_voxcpm
from patches.rope import rope_tables
from tests.helpers import max_rel_error

TOL = 1e-5


@pytest.fixture
def pair(tiny_dir):
    """(original, patched) copies of the same checkpoint."""
    return load_voxcpm(tiny_dir), patch_model(load_voxcpm(tiny_dir))


def test_patch_model_swaps_every_layer(pair):
    _, patched = pair
    names = {type(m).__name__ for m in patched.modules()}
    assert {"ConvertibleAttention", "ConvertibleDecoderLayer", "ConvertibleMiniCPMModel", "PlainSnake"} <= names
    assert not {"MiniCPMAttention", "MiniCPMDecoderLayer", "Snake1d"} & names
    assert not any(hasattr(m, "weight_g") for m in patched.modules())


def test_rope_tables_equal_voxcpm_fp32_tables(pair):
    original, _ = pair
    cos, sin = rope_tables(original.base_lm.config, 512)
    assert max_rel_error(cos, original.base_lm.rope_emb.cos_cached[:512]) <= 1e-6
    assert max_rel_error(sin, original.base_lm.rope_emb.sin_cached[:512]) <= 1e-6


@pytest.mark.parametrize("part", ["base_lm", "residual_lm"])
def test_causal_prefill_equal(pair, part):
    original, patched = pair
    x = torch.randn(1, 23, original.base_lm.config.hidden_size)
    with torch.no_grad():
        expected, expected_kv = getattr(original, part)(x, is_causal=True)
        actual, actual_kv = getattr(patched, part)(x, is_causal=True)
    assert max_rel_error(actual, expected) <= TOL
    assert max_rel_error(actual_kv[-1][0], expected_kv[-1][0]) <= TOL


def test_feat_encoder_and_locdit_equal(pair):
    original, patched = pair
    feat = torch.randn(1, 3, 4, 64)
    x, cond, mu = torch.randn(2, 64, 4), torch.randn(2, 64, 4), torch.randn(2, original.config.dit_config.hidden_dim)
    mu[1] = 0
    t, dt = torch.tensor([0.7, 0.7]), torch.zeros(2)
    with torch.no_grad():
        assert max_rel_error(FeatEncoder(patched)(feat), original.feat_encoder(feat)) <= TOL
        assert max_rel_error(LocDiTStep(patched)(x, mu, t, cond, dt),
                             original.feat_decoder.estimator(x, mu, t, cond, dt)) <= TOL


def test_audio_vae_equal(pair):
    original, patched = pair
    audio = 0.3 * torch.randn(1, 1, 7056 * 3)
    latent = torch.randn(1, 64, 12)
    with torch.no_grad():
        assert max_rel_error(AudioVAEEncoder(patched)(audio), original.audio_vae.encode(audio, 44100)) <= TOL
        assert max_rel_error(AudioVAEDecoder(patched)(latent), original.audio_vae.decode(latent)) <= TOL


def _original_rollout(lm, prefill, steps):
    """voxcpm's own prefill + forward_step; returns per-step hiddens and the final cache."""
    lm.setup_cache(1, lm.kv_cache.max_length if lm.kv_cache else 1024, "cpu", torch.float32)
    with torch.no_grad():
        _, kv = lm(prefill, is_causal=True)
        lm.kv_cache.fill_caches(kv)
        hiddens = [lm.forward_step(s, torch.tensor([lm.kv_cache.step()])).clone() for s in steps]
    return hiddens, lm.kv_cache.kv_cache


@pytest.mark.parametrize("start", [0, 5, 37, 300])
@pytest.mark.parametrize("stateful", [False, True])
def test_lm_step_rollout_equals_voxcpm_forward_step(pair, start, stateful):
    """Caches and hiddens after >= 8 steps, from prefills of varied length."""
    original, patched = pair
    hidden = original.config.lm_config.hidden_size
    prefill = torch.randn(1, max(start, 1), hidden)
    steps = [torch.randn(1, hidden) for _ in range(10)]
    expected, expected_cache = _original_rollout(original.residual_lm, prefill, steps)

    step = ResidualLMStep(patched, max_context=512, stateful=stateful)
    k, v = empty_caches(patched.residual_lm, 512)
    layers = len(k)
    actual = []
    with torch.no_grad():
        for position, embed in enumerate([prefill[:, i] for i in range(prefill.shape[1])] + steps):
            out, *caches = step(embed, torch.tensor([position], dtype=torch.int32), *([] if stateful else k + v))
            if not stateful:
                k, v = caches[:layers], caches[layers:]
            actual.append(out)
    if stateful:
        k = [getattr(step, f"k_cache_{i}") for i in range(layers)]
        v = [getattr(step, f"v_cache_{i}") for i in range(layers)]
    for a, e in zip(actual[prefill.shape[1]:], expected):
        assert max_rel_error(a, e) <= TOL
    used = prefill.shape[1] + len(steps)
    for i in range(layers):
        assert max_rel_error(k[i][:, :, :used], expected_cache[0, i][:, :, :used]) <= TOL
        assert max_rel_error(v[i][:, :, :used], expected_cache[1, i][:, :, :used]) <= TOL
        assert torch.count_nonzero(k[i][:, :, used:]) == 0  # nothing written past the last position


def test_base_step_outputs_fsq_and_stop_from_fsq(pair):
    original, patched = pair
    step = BaseLMStep(patched, max_context=64)
    k, v = empty_caches(patched.base_lm, 64)
    embed = torch.randn(1, original.config.lm_config.hidden_size)
    with torch.no_grad():
        hidden, fsq, stop, *_ = step(embed, torch.tensor([0], dtype=torch.int32), *k, *v)
        assert max_rel_error(fsq, original.fsq_layer(hidden)) <= TOL
        assert max_rel_error(stop, original.stop_head(original.stop_actn(original.stop_proj(fsq)))) <= TOL


def test_cache_writers_agree():
    cache = torch.randn(1, 2, 16, 8)
    states = torch.randn(1, 2, 1, 8)
    position = torch.tensor([5], dtype=torch.int32)
    functional = scatter_write(cache, position, states)
    assert torch.equal(functional[:, :, 5:6], states) and not torch.equal(cache[:, :, 5:6], states)
    in_place = inplace_write(cache.clone(), position, states)
    assert torch.equal(in_place, functional)


def test_mup_off_is_honoured(tiny_no_mup_dir):
    original = load_voxcpm(tiny_no_mup_dir)
    assert original.config.lm_config.use_mup is False
    patched = patch_model(load_voxcpm(tiny_no_mup_dir))
    assert all(layer.residual_scale == 1.0 for layer in patched.base_lm.layers)
    x = torch.randn(1, 9, original.config.lm_config.hidden_size)
    with torch.no_grad():
        assert max_rel_error(patched.base_lm(x)[0], original.base_lm(x)[0]) <= TOL


# ----------------------------------------------------------------- full 1.5 layer sizes
@pytest.fixture(scope="module")
def full_lm_config():
    from checkpoint.fixture import make_config
    from checkpoint.compat import import_voxcpm

    config = import_voxcpm().VoxCPMConfig.model_validate(make_config(full=True, vocab_size=73448))
    lm = config.lm_config.model_copy(deep=True)
    lm.num_hidden_layers = 1
    lm.vocab_size = 0
    return lm


def test_full_size_decoder_layer_equal(full_lm_config):
    """One MiniCPM layer at 1024 / 4096 / 16 query and 2 KV heads: prefill and 8 cached steps."""
    from voxcpm.modules.minicpm4.model import MiniCPMModel

    torch.manual_seed(0)
    original = MiniCPMModel(full_lm_config).eval()
    for p in original.parameters():
        torch.nn.init.normal_(p, std=0.03)
    patched = MiniCPMModel(full_lm_config).eval()
    patched.load_state_dict(original.state_dict())
    patch_minicpm(patched)
    prefill = torch.randn(1, 40, 1024)
    steps = [torch.randn(1, 1024) for _ in range(8)]
    original.setup_cache(1, 512, "cpu", torch.float32)
    expected, expected_cache = _original_rollout(original, prefill, steps)
    cos_table, sin_table = rope_tables(full_lm_config, 512)
    k, v = empty_caches(patched, 512)
    with torch.no_grad():
        assert max_rel_error(patched(prefill)[0], original(prefill)[0]) <= TOL
        for position in range(40 + len(steps)):
            embed = prefill[:, position] if position < 40 else steps[position - 40]
            pos = torch.tensor([position], dtype=torch.int32)
            out, k, v = patched.step(embed, pos, cos_table[pos.long()], sin_table[pos.long()], k, v, scatter_write)
            if position >= 40:
                assert max_rel_error(out, expected[position - 40]) <= TOL
    assert max_rel_error(k[0][:, :, :48], expected_cache[0, 0][:, :, :48]) <= TOL
    assert max_rel_error(v[0][:, :, :48], expected_cache[1, 0][:, :, :48]) <= TOL


@pytest.mark.parametrize("direction", ["encoder", "decoder"])
def test_full_size_vae_block_equal(direction):
    """A full-width VAE block (weight norm + Snake + depthwise causal convs) before and after patching."""
    from voxcpm.modules.audiovae.audio_vae import CausalDecoderBlock, CausalEncoderBlock

    torch.manual_seed(0)
    if direction == "encoder":  # the widest encoder block: 1024 -> 2048 channels, stride 7
        make = lambda: CausalEncoderBlock(output_dim=2048, stride=7, groups=1024)
        x = torch.randn(1, 1024, 70)
    else:  # the widest decoder block: 2048 -> 1024 channels, stride 7
        make = lambda: CausalDecoderBlock(2048, 1024, stride=7, groups=1024)
        x = torch.randn(1, 2048, 10)
    original = make().eval()
    patched = make().eval()
    patched.load_state_dict(original.state_dict())
    patch_audio_vae(patched)
    with torch.no_grad():
        assert max_rel_error(patched(x), original(x)) <= TOL


# ----------------------------------------------------------------- negative controls
def test_wrong_gqa_order_is_caught(pair, monkeypatch):
    """`repeat` instead of `repeat_interleave` pairs query heads with the wrong KV heads."""
    import patches.attention as attention

    original, patched = pair
    monkeypatch.setattr(attention, "expand_kv_heads", lambda x, groups: x.repeat(1, groups, 1, 1))
    x = torch.randn(1, 11, original.config.lm_config.hidden_size)
    with torch.no_grad():
        assert max_rel_error(patched.base_lm(x)[0], original.base_lm(x)[0]) > 1e-3


def test_cache_written_one_slot_off_is_caught(pair):
    original, patched = pair
    hidden = original.config.lm_config.hidden_size
    prefill, steps = torch.randn(1, 6, hidden), [torch.randn(1, hidden) for _ in range(8)]
    expected, _ = _original_rollout(original.residual_lm, prefill, steps)
    step = ResidualLMStep(patched, max_context=64)
    k, v = empty_caches(patched.residual_lm, 64)
    outs = []
    with torch.no_grad():
        for position, embed in enumerate([prefill[:, i] for i in range(6)] + steps):
            out, *caches = step(embed, torch.tensor([position + 1], dtype=torch.int32), *k, *v)
            k, v = caches[: len(k)], caches[len(k):]
            outs.append(out)
    assert max(max_rel_error(a, e) for a, e in zip(outs[6:], expected)) > 1e-3
