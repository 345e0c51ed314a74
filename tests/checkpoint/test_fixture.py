"""The fixture checkpoint: deterministic, HF layout, a Llama-style tokenizer with Chinese merges."""
import hashlib
import json

from checkpoint.fixture import build_fixture, make_config


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_deterministic(tiny_dir, tmp_path):
    again = build_fixture(tmp_path / "again")
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        assert _sha(again / name) == _sha(tiny_dir / name), name


def test_hf_layout_and_audiovae_state_dict_key(tiny_dir):
    import torch

    for name in ("config.json", "model.safetensors", "audiovae.pth", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json"):
        assert (tiny_dir / name).is_file(), name
    assert "state_dict" in torch.load(tiny_dir / "audiovae.pth", weights_only=True)


def test_tiny_keeps_the_44k_vae_and_patch_size(tiny_dir):
    config = json.loads((tiny_dir / "config.json").read_text())
    vae = config["audio_vae_config"]
    assert vae["sample_rate"] == 44100 and vae["encoder_rates"] == [2, 3, 6, 7, 7]
    assert vae["decoder_rates"] == [7, 7, 6, 3, 2] and config["patch_size"] == 4 and config["feat_dim"] == 64
    lm = config["lm_config"]
    assert lm["num_attention_heads"] > lm["num_key_value_heads"] > 1  # grouped-query attention


def test_full_config_has_the_released_sizes():
    config = make_config(full=True, vocab_size=73448)
    lm = config["lm_config"]
    assert (lm["hidden_size"], lm["intermediate_size"], lm["num_hidden_layers"]) == (1024, 4096, 24)
    assert (lm["num_attention_heads"], lm["num_key_value_heads"], lm["vocab_size"]) == (16, 2, 73448)
    assert len(lm["rope_scaling"]["short_factor"]) == 32
    assert config["residual_lm_num_layers"] == 8 and config["audio_vae_config"]["decoder_dim"] == 2048


def test_tokenizer_splits_multichar_chinese_tokens(tiny_dir):
    from checkpoint.loading import load_voxcpm

    wrapper = load_voxcpm(tiny_dir).text_tokenizer
    assert wrapper.multichar_tokens, "the fixture vocabulary must contain multi-character Chinese tokens"
    token = sorted(wrapper.multichar_tokens, key=len)[-1]
    tokens = wrapper.tokenize(token)
    assert tokens[-len(token):] == list(token)  # one piece per character after the split
    assert "".join(tokens).replace("▁", "") == token
    assert wrapper(token)[-len(token):] == wrapper.tokenizer.convert_tokens_to_ids(list(token))
