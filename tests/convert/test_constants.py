"""constants/ (npy) and constants_bin/ (raw fp16) hold the same arrays; tokenizer files are copied."""
import json

import numpy as np
import pytest
import torch

from contract.artifacts import PROJECTIONS

NAMES = ["embed_tokens"] + [f"{p}_{s}" for p in PROJECTIONS for s in ("w", "b")]


@pytest.fixture(scope="module")
def reference(tiny_dir):
    from safetensors import safe_open

    with safe_open(str(tiny_dir / "model.safetensors"), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    arrays = {"embed_tokens": tensors["base_lm.embed_tokens.weight"]}
    for proj in PROJECTIONS:
        arrays[f"{proj}_w"], arrays[f"{proj}_b"] = tensors[f"{proj}.weight"], tensors[f"{proj}.bias"]
    return {k: v.to(torch.float32).numpy() for k, v in arrays.items()}


def test_npy_equal_checkpoint(tiny_out, reference):
    assert sorted(p.stem for p in (tiny_out / "constants").glob("*.npy")) == sorted(NAMES)
    for name in NAMES:
        array = np.load(tiny_out / "constants" / f"{name}.npy")
        assert array.dtype == np.float32
        np.testing.assert_array_equal(array, reference[name])


def test_bin_is_fp16_of_npy_byte_exact(tiny_out, tiny_config):
    config = json.loads((tiny_out / "constants" / "config.json").read_text())
    hidden = tiny_config["lm_config"]["hidden_size"]
    assert config["arrays"]["embed_tokens"]["shape"] == [tiny_config["lm_config"]["vocab_size"], hidden]
    assert config["arrays"]["enc_to_lm_proj_w"]["shape"] == [hidden, tiny_config["encoder_config"]["hidden_dim"]]
    for name in NAMES:
        array = np.load(tiny_out / "constants" / f"{name}.npy")
        raw = (tiny_out / "constants_bin" / f"{name}.bin").read_bytes()
        assert len(raw) == 2 * array.size == 2 * int(np.prod(config["arrays"][name]["shape"]))
        assert raw == array.astype("<f2").tobytes()


def test_tokenizer_files_copied(tiny_out, tiny_dir):
    config = json.loads((tiny_out / "constants" / "config.json").read_text())
    assert {"tokenizer.json", "tokenizer_config.json"} <= set(config["tokenizer_files"])
    for name in config["tokenizer_files"]:
        assert (tiny_out / "constants_bin" / name).read_bytes() == (tiny_dir / name).read_bytes()


def test_config_sizes_follow_checkpoint(tiny_out, tiny_config):
    config = json.loads((tiny_out / "constants" / "config.json").read_text())
    lm = tiny_config["lm_config"]
    assert config["hidden_size"] == lm["hidden_size"] and config["base_lm_layers"] == lm["num_hidden_layers"]
    assert config["residual_lm_layers"] == tiny_config["residual_lm_num_layers"]
    assert config["patch_size"] == 4 and config["feat_dim"] == 64 and config["token_rate"] == 6.25
    assert config["use_mup"] == lm["use_mup"] and config["scale_emb"] == lm["scale_emb"]
