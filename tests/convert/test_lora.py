"""Converting base + LoRA adapter and full fine-tunes: the merged model's artifacts, recorded in the manifest,
never reusing artifacts of the base alone or of another adapter; a bad adapter is one line and writes nothing."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from convert.cli import main
from tests.helpers import program_and_weights

from .conftest import run_convert
from .test_errors import _assert_one_line_error

ONE = ["--components", "locdit_step", "--precision", "fp16"]   # one adapted component: ~10 s


def _convert(capsys, checkpoint, out, *args) -> tuple[dict, str]:
    """In-process `python -m convert`: ({(component, precision): status}, stdout)."""
    assert main(["--model", str(checkpoint), "--out", str(out), *map(str, args)]) == 0
    printed = capsys.readouterr().out
    rows = {}
    for line in printed.splitlines():
        fields = line.split()
        if line.endswith(("built", "up to date")) and len(fields) >= 5:
            rows[(fields[0], fields[1])] = "built" if line.endswith("built") else "up to date"
    return rows, printed


def _lora(adapter, config=True):
    return ["--lora", adapter] + (["--lora-config", Path(adapter) / "train.yaml"] if config else [])


def test_adapter_never_reuses_other_artifacts(tiny_dir, tiny_adapter, copy_of_out, tmp_path, capsys):
    """Into an OUT holding the base conversion: base + adapter rebuilds, the same again is up to date,
    another adapter rebuilds, the base alone rebuilds; the manifest names the adapter of every artifact."""
    from checkpoint.adapter_fixture import build_adapter

    rows, _ = _convert(capsys, tiny_dir, copy_of_out, *ONE, *_lora(tiny_adapter))
    assert rows == {("constants", "fp32+fp16"): "built", ("locdit_step", "fp16"): "built"}
    manifest = json.loads((copy_of_out / "manifest.json").read_text())
    adapter = manifest["source"]["adapter"]
    sha = adapter["sha256"]
    assert adapter["config"]["r"] == 4 and adapter["config"]["alpha"] == 8
    assert adapter["alpha_source"].endswith("train.yaml (lora: section)") and adapter["layers"]["proj"] == 3
    assert Path(adapter["file"]).name == "lora_weights.safetensors" and len(sha) == 64
    assert {manifest["artifacts"][k].get("adapter_sha256") for k in ("constants", "fp16/locdit_step")} == {sha}
    assert "adapter_sha256" not in manifest["artifacts"]["fp16/feat_encoder"]  # not rebuilt: still the base's

    rows, _ = _convert(capsys, tiny_dir, copy_of_out, *ONE, *_lora(tiny_adapter))
    assert set(rows.values()) == {"up to date"}

    other = build_adapter(tiny_dir, tmp_path / "other", r=4, alpha=8, seed=5).parent
    rows, printed = _convert(capsys, tiny_dir, copy_of_out, *ONE, *_lora(other, config=False))
    assert set(rows.values()) == {"built"}
    assert "warning: alpha is not stored in LoRA weights and no LORA_CONFIG was given: using voxcpm's default " \
           "alpha=16" in printed  # said after the summary, where it is seen
    assert json.loads((copy_of_out / "manifest.json").read_text())["source"]["adapter"]["alpha_source"].startswith(
        "voxcpm's default")

    rows, _ = _convert(capsys, tiny_dir, copy_of_out, *ONE)
    assert set(rows.values()) == {"built"}
    manifest = json.loads((copy_of_out / "manifest.json").read_text())
    assert "adapter" not in manifest["source"] and "adapter_sha256" not in manifest["artifacts"]["fp16/locdit_step"]


def _merged_checkpoint(tiny_dir, tiny_adapter, target: Path) -> Path:
    """The base with the adapter merged, saved as a plain checkpoint."""
    from checkpoint.loading import load_voxcpm
    from checkpoint.lora import open_adapter

    shutil.copytree(tiny_dir, target)
    adapter = open_adapter(tiny_adapter, tiny_adapter / "train.yaml", Path(tiny_dir), 44100)
    state = adapter.merge_into(load_voxcpm(tiny_dir)).state_dict()
    save_file({k: v.contiguous() for k, v in state.items() if not k.startswith("audio_vae.")},
              str(target / "model.safetensors"))
    return target


def test_artifacts_are_a_plain_conversion_of_the_merged_model(tiny_dir, tiny_adapter, tmp_path, capsys):
    merged = _merged_checkpoint(tiny_dir, tiny_adapter, tmp_path / "merged")
    _convert(capsys, merged, tmp_path / "plain", *ONE)
    _convert(capsys, tiny_dir, tmp_path / "lora", *ONE, *_lora(tiny_adapter))
    package = Path("fp16") / "locdit_step.mlpackage"
    assert program_and_weights(tmp_path / "plain" / package) == program_and_weights(tmp_path / "lora" / package)
    for name in ("enc_to_lm_proj_w", "lm_to_dit_proj_b", "res_to_dit_proj_w", "embed_tokens"):
        assert np.array_equal(np.load(tmp_path / "plain" / "constants" / f"{name}.npy"),
                              np.load(tmp_path / "lora" / "constants" / f"{name}.npy")), name
    base = np.load(tmp_path / "lora" / "constants" / "enc_to_lm_proj_w.npy")
    from safetensors.torch import load_file

    assert not np.array_equal(base, load_file(tiny_dir / "model.safetensors")["enc_to_lm_proj.weight"].numpy())
    import coremltools as ct

    meta = ct.models.MLModel(str(tmp_path / "lora" / package), skip_model_load=True).user_defined_metadata
    assert meta["voxcpm.lora"].startswith("lora_weights.safetensors sha256 ")


def _fine_tuned(tiny_dir, run: Path) -> Path:
    """A full fine-tune as voxcpm's script leaves it: step folder (weights without audio_vae.*, the base's
    config, VAE and tokenizer copied, optimizer and scheduler state) and a `latest` link."""
    from checkpoint.loading import load_voxcpm

    step = run / "step_0001000"
    step.mkdir(parents=True)
    state = load_voxcpm(tiny_dir).state_dict()
    state["lm_to_dit_proj.weight"] = state["lm_to_dit_proj.weight"] * 1.5   # "trained"
    save_file({k: v.contiguous() for k, v in state.items() if not k.startswith("audio_vae.")},
              str(step / "model.safetensors"))
    for name in ("config.json", "audiovae.pth", "tokenizer.json", "special_tokens_map.json", "tokenizer_config.json"):
        shutil.copy2(tiny_dir / name, step / name)
    torch.save({"state": {}}, step / "optimizer.pth")
    torch.save({"last_epoch": 1000}, step / "scheduler.pth")
    os.symlink(str(step), run / "latest")
    return step


def test_full_fine_tune_converts_with_model_alone(tiny_dir, tmp_path, capsys):
    step = _fine_tuned(tiny_dir, tmp_path / "run")
    _convert(capsys, tmp_path / "run", tmp_path / "out", *ONE)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["source"]["checkpoint_dir"] == str(step.resolve())
    from safetensors.torch import load_file

    trained = load_file(step / "model.safetensors")["lm_to_dit_proj.weight"].numpy()
    assert np.array_equal(np.load(tmp_path / "out" / "constants" / "lm_to_dit_proj_w.npy"), trained)
    (step / "audiovae.pth").unlink()
    line = _assert_one_line_error(run_convert("--model", tmp_path / "run", "--out", tmp_path / "out2"))
    assert "has no audiovae.safetensors or audiovae.pth: copy config.json, audiovae.pth" in line
    assert not (tmp_path / "out2").exists()


@pytest.mark.parametrize("make,words", [
    (lambda adapter, tmp: ["--lora", tmp / "nowhere"], "does not exist"),
    (lambda adapter, tmp: ["--lora", adapter, "--lora-config", tmp / "none.yaml"], "does not exist"),
    (lambda adapter, tmp: ["--lora-config", adapter / "train.yaml"], "--lora-config needs --lora"),
    (lambda adapter, tmp: ["--lora", _with_nan(adapter, tmp)], "NaN or infinite"),
], ids=["no-adapter", "no-config", "config-alone", "nan"])
def test_bad_adapter_is_one_line_and_writes_nothing(tiny_dir, tiny_adapter, tmp_path, make, words):
    out = tmp_path / "out"
    line = _assert_one_line_error(run_convert("--model", tiny_dir, "--out", out, *make(tiny_adapter, tmp_path)))
    assert words in line
    assert not out.exists()


def _with_nan(adapter: Path, tmp: Path) -> Path:
    from safetensors.torch import load_file

    tensors = load_file(adapter / "lora_weights.safetensors")
    next(v for k, v in sorted(tensors.items()) if k.endswith("lora_B"))[0, 0] = float("inf")
    save_file(tensors, str(tmp / "lora_weights.safetensors"))
    return tmp / "lora_weights.safetensors"


def test_bad_adapter_keeps_earlier_artifacts(tiny_dir, tiny_adapter, copy_of_out, tmp_path):
    from .conftest import artifact_hashes

    before = artifact_hashes(copy_of_out)
    bad = tmp_path / "bad.yaml"
    bad.write_text((tiny_adapter / "train.yaml").read_text().replace("r: 4", "r: 16"))
    line = _assert_one_line_error(run_convert("--model", tiny_dir, "--out", copy_of_out, "--lora", tiny_adapter,
                                              "--lora-config", bad))
    assert "rank mismatch" in line and artifact_hashes(copy_of_out) == before
