"""Loading: strict keys, local and hub sources, one-line errors for bad checkpoints."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from checkpoint.loading import CheckpointError, load_voxcpm

ROOT = Path(__file__).resolve().parents[2]


def run_check(*args, env=None):
    """`python -m checkpoint …` as a user runs it."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "checkpoint", *map(str, args)], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(result, *needles):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def broken_copy(tiny_dir, tmp_path):
    target = tmp_path / "ckpt"
    shutil.copytree(tiny_dir, target)
    return target


def test_loads_fp32_and_matches_voxcpm_from_local(tiny_dir):
    from voxcpm.model.voxcpm import VoxCPMModel

    ours = load_voxcpm(tiny_dir)
    assert all(p.dtype == torch.float32 for p in ours.parameters())
    theirs = VoxCPMModel.from_local(str(tiny_dir), optimize=False, device="cpu")
    for name, tensor in theirs.state_dict().items():  # theirs is bf16 (the config's dtype) but the same weights
        assert torch.allclose(ours.state_dict()[name].to(tensor.dtype).float(), tensor.float()), name


def test_loading_without_random_draws_gives_the_same_model(tiny_dir):
    """load_voxcpm skips the layers' random initial weights; every value still comes from the checkpoint,
    and torch's random fills work again afterwards."""
    from checkpoint.loading import RANDOM_INITS, build_model, load_weights

    fast = load_voxcpm(tiny_dir)
    drawn = build_model(tiny_dir)
    load_weights(drawn, tiny_dir)
    fast_state, drawn_state = fast.state_dict(), drawn.state_dict()
    assert fast_state.keys() == drawn_state.keys()
    for name, tensor in drawn_state.items():
        assert torch.equal(fast_state[name], tensor), name
    buffers = dict(fast.named_buffers())   # non-persistent buffers are computed, not loaded: still there
    for name, tensor in drawn.named_buffers():
        assert torch.equal(buffers[name], tensor), name
    weight = torch.zeros(64)
    for name in ("uniform_", "normal_"):
        getattr(torch.nn.init, name)(weight)
        assert weight.abs().sum() > 0, f"torch.nn.init.{name} still skipped after loading"
        weight.zero_()
    assert all(hasattr(torch.nn.init, name) for name in RANDOM_INITS[:6])


def test_the_fixture_builder_still_draws_random_weights(tiny_dir):
    from checkpoint.loading import build_model

    a, b = build_model(tiny_dir), build_model(tiny_dir)
    assert not torch.equal(a.stop_head.weight, b.stop_head.weight)   # drawn, not left as they were


def test_voxcpm_from_local_generates_on_the_fixture(tiny_dir):
    from voxcpm.model.voxcpm import VoxCPMModel

    model = VoxCPMModel.from_local(str(tiny_dir), optimize=False, device="cpu")
    torch.manual_seed(0)
    audio = model.generate("Hello, this is a test.", max_len=12)
    assert audio.ndim == 2 and audio.shape[1] % 7056 == 0 and audio.shape[1] >= 7056 * 4
    assert torch.isfinite(audio).all()


def test_missing_directory(tmp_path):
    assert_one_line_error(run_check(tmp_path / "nope"), "does not exist", "MODEL=")


def test_renamed_key_is_named(broken_copy):
    from safetensors.torch import load_file, save_file

    weights = load_file(broken_copy / "model.safetensors")
    weights["stop_head.weight_renamed"] = weights.pop("stop_head.weight")
    save_file(weights, broken_copy / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing \(stop_head.weight\).*unexpected \(stop_head.weight_renamed\)"):
        load_voxcpm(broken_copy)
    assert_one_line_error(run_check(broken_copy), "stop_head.weight")


def test_truncated_safetensors(broken_copy):
    path = broken_copy / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert_one_line_error(run_check(broken_copy), "model.safetensors", "corrupt or truncated")


def test_corrupt_audiovae(broken_copy):
    (broken_copy / "audiovae.pth").write_bytes(b"not a checkpoint")
    assert_one_line_error(run_check(broken_copy), "audiovae.pth", "corrupt or truncated")


def test_wrong_hidden_size_in_config(broken_copy):
    config = json.loads((broken_copy / "config.json").read_text())
    config["lm_config"]["hidden_size"] = 256
    (broken_copy / "config.json").write_text(json.dumps(config))
    assert_one_line_error(run_check(broken_copy), "hidden_size 256")
    # a hidden size that keeps the head dim fits the RoPE factors, so the weights give it away
    config["lm_config"].update(hidden_size=256, num_attention_heads=16)
    (broken_copy / "config.json").write_text(json.dumps(config))
    assert_one_line_error(run_check(broken_copy), "shapes that config.json does not give")


def test_missing_weight_file(broken_copy):
    (broken_copy / "model.safetensors").unlink()
    assert_one_line_error(run_check(broken_copy), "model.safetensors or pytorch_model.bin")


def test_invalid_config(broken_copy):
    (broken_copy / "config.json").write_text('{"lm_config": {}}')
    assert_one_line_error(run_check(broken_copy), "not a VoxCPM 1.5 config")


def test_voxcpm2_config_is_refused(broken_copy):
    config = json.loads((broken_copy / "config.json").read_text())
    (broken_copy / "config.json").write_text(json.dumps({**config, "architecture": "voxcpm2"}))
    assert_one_line_error(run_check(broken_copy), "voxcpm2")


def test_pytorch_bin_is_loaded_with_weights_only(broken_copy):
    from safetensors.torch import load_file

    weights = load_file(broken_copy / "model.safetensors")
    (broken_copy / "model.safetensors").unlink()
    torch.save(weights, broken_copy / "pytorch_model.bin")
    model = load_voxcpm(broken_copy)
    assert torch.equal(model.stop_head.weight, weights["stop_head.weight"])


def _hub_cache(tiny_dir, cache: Path, repo="test-org/voxcpm-tiny", commit="a" * 40) -> Path:
    """Lay the fixture out as huggingface_hub caches a downloaded snapshot."""
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(tiny_dir, repo_dir / "snapshots" / commit)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return repo_dir


def test_hub_id_resolves_through_snapshot_download(tiny_dir, tmp_path):
    _hub_cache(tiny_dir, tmp_path)
    env = {"HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = run_check("test-org/voxcpm-tiny", env=env)
    assert result.returncode == 0, result.stderr
    assert "snapshots/" + "a" * 40 in result.stdout and "every tensor matched" in result.stdout
    pinned = run_check("test-org/voxcpm-tiny", "--revision", "a" * 40, env=env)
    assert pinned.returncode == 0, pinned.stderr


def test_unreachable_hub_is_one_line(tmp_path):
    result = run_check("test-org/not-cached", env={"HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert_one_line_error(result, "cannot download test-org/not-cached", "MODEL=")
