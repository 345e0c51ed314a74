"""LoRA adapters: read as voxcpm writes them, merged in FP32 equal to voxcpm's live LoRALinear layers,
and every bad adapter refused with one line before anything is loaded."""
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from checkpoint.loading import CheckpointError, load_voxcpm
from checkpoint.lora import open_adapter
from checkpoint.lora_config import LoRAError

RATE = 44100


def _open(adapter, base, config="train.yaml", **kwargs):
    config_path = None if config is None else (Path(adapter) / config if isinstance(config, str) else config)
    return open_adapter(adapter, config_path, Path(base), kwargs.pop("rate", RATE), **kwargs)


def _rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture
def adapter_copy(tiny_adapter, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_adapter, tmp_path / "adapter"))


def _rewrite(adapter: Path, change) -> None:
    tensors = load_file(adapter / "lora_weights.safetensors")
    change(tensors)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(adapter / "lora_weights.safetensors"))


def _rewrite_config(adapter: Path, change, name="train.yaml") -> Path:
    data = yaml.safe_load((adapter / "train.yaml").read_text())
    change(data)
    (adapter / name).write_text(yaml.safe_dump(data))
    return adapter / name


# ----------------------------------------------------------------------------- what voxcpm writes and reads
def test_the_fixture_is_what_voxcpm_saves_and_loads(tiny_dir, tiny_adapter):
    """Keys and shapes are those of voxcpm's own LoRA model (the script saves its "lora_" entries), and
    voxcpm's own load_lora_weights takes every tensor."""
    from voxcpm.model.voxcpm import VoxCPMModel

    adapter = _open(tiny_adapter, tiny_dir)
    model = VoxCPMModel.from_local(str(tiny_dir), optimize=False, device="cpu", lora_config=adapter.lora_config())
    theirs = {k: tuple(v.shape) for k, v in model.state_dict().items() if "lora_" in k}
    ours = {k: tuple(v.shape) for k, v in load_file(tiny_adapter / "lora_weights.safetensors").items()}
    assert ours == theirs
    loaded, skipped = model.load_lora_weights(str(tiny_adapter))
    assert skipped == [] and len(loaded) == len(ours)
    assert adapter.parts == {"lm": 20, "dit": 8, "proj": 3}
    assert all(b.abs().max() > 0 for _, b in adapter.tensors.values())  # B is trained, not voxcpm's zero init


@pytest.fixture(scope="module")
def three_models(tiny_dir, tiny_adapter):
    """(base, voxcpm's LoRA model with the adapter live, the merged model)."""
    adapter = _open(tiny_adapter, tiny_dir)
    return load_voxcpm(tiny_dir), load_voxcpm(tiny_dir, adapter=adapter), adapter.merge_into(load_voxcpm(tiny_dir))


@torch.no_grad()
def _outputs(model, gen) -> dict:
    x = torch.randn(1, 9, 128, generator=gen)
    dit = [torch.randn(2, 64, 4, generator=gen), torch.randn(2, 128, generator=gen),
           torch.rand(2, generator=gen), torch.randn(2, 64, 4, generator=gen), torch.zeros(2)]
    outputs = {"base_lm": model.base_lm(inputs_embeds=x, is_causal=True)[0],
               "residual_lm": model.residual_lm(inputs_embeds=x, is_causal=True)[0],
               "locdit": model.feat_decoder.estimator(*dit),
               "feat_encoder": model.feat_encoder(torch.randn(1, 3, 4, 64, generator=gen))}
    for name in ("enc_to_lm_proj", "lm_to_dit_proj", "res_to_dit_proj"):
        outputs[name] = getattr(model, name)(x[0])
    return outputs


def test_fp32_merge_equals_voxcpm_live_lora(three_models):
    """W + alpha/r·B·A gives voxcpm's LoRALinear outputs to fp32 rounding on every adapted part, and the
    adapter moves each of them (LM, DiT, projections) by far more than any gate."""
    base, live, merged = (_outputs(m, torch.Generator().manual_seed(0)) for m in three_models)
    for name in live:
        assert _rel(merged[name], live[name]) <= 1e-5, name
        moved = _rel(base[name], live[name])
        assert (moved == 0) if name == "feat_encoder" else (moved > 0.05), (name, moved)  # LocEnc is never adapted


def test_merge_touches_only_the_adapted_weights(three_models, tiny_dir, tiny_adapter):
    base, _, merged = three_models
    adapted = {f"{m}.weight" for m in _open(tiny_adapter, tiny_dir).tensors}
    changed = {k for k, v in merged.state_dict().items() if not torch.equal(v, base.state_dict()[k])}
    assert changed == adapted


def test_the_scale_is_alpha_over_r(three_models, tiny_dir, tiny_adapter):
    base, _, merged = three_models
    adapter = _open(tiny_adapter, tiny_dir)
    a, b = adapter.tensors["lm_to_dit_proj"]
    delta = merged.lm_to_dit_proj.weight - base.lm_to_dit_proj.weight
    assert adapter.settings.scale == 8 / 4 and torch.allclose(delta, 2.0 * b @ a, atol=1e-6)


# ----------------------------------------------------------------------------- files, folders, configs
def test_ckpt_file_and_latest_link(tiny_dir, tiny_adapter, tmp_path):
    """lora_weights.ckpt ({"state_dict": ...}) and a training run's folder whose `latest` link was written
    relative to the training's working directory (it dangles here) read the same."""
    run = tmp_path / "run"
    step = run / "step_0000200"
    step.mkdir(parents=True)
    torch.save({"state_dict": load_file(tiny_adapter / "lora_weights.safetensors")}, step / "lora_weights.ckpt")
    os.symlink("checkpoints/step_0000200", run / "latest")
    adapter = _open(run, tiny_dir, config=tiny_adapter / "train.yaml")
    assert adapter.file == step / "lora_weights.ckpt"
    reference = _open(tiny_adapter, tiny_dir)
    assert all(torch.equal(adapter.tensors[m][1], reference.tensors[m][1]) for m in reference.tensors)


def test_json_config_and_keys_alone(tiny_dir, tiny_adapter, tmp_path):
    fields = yaml.safe_load((tiny_adapter / "train.yaml").read_text())["lora"]
    (tmp_path / "lora.json").write_text(json.dumps(fields))
    (tmp_path / "nested.json").write_text(json.dumps({"lora_config": fields}))
    for config in (tmp_path / "lora.json", tmp_path / "nested.json"):
        adapter = _open(tiny_adapter, tiny_dir, config=config)
        assert adapter.settings.alpha == 8 and adapter.warning() is None
    inferred = _open(tiny_adapter, tiny_dir, config=None)
    assert inferred.settings.r == 4 and inferred.settings.alpha == 16  # voxcpm's default LoRAConfig.alpha
    assert inferred.settings.fields["enable_proj"] and sorted(inferred.settings.fields["target_modules_lm"]) == \
        ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert "voxcpm's default alpha=16" in inferred.warning() and "LORA_CONFIG" in inferred.warning()
    assert inferred.record()["alpha_source"].startswith("voxcpm's default")


def test_model_folder_as_adapter_and_adapter_as_model(tiny_dir, tiny_adapter, tmp_path):
    with pytest.raises(LoRAError, match="holds a model, not a LoRA adapter"):
        _open(tiny_dir, tiny_dir, config=None)
    with pytest.raises(CheckpointError, match="holds a LoRA adapter, not a model: pass it as LORA="):
        load_voxcpm(tiny_adapter)
    shutil.copy(tiny_dir / "model.safetensors", tmp_path / "lora_weights.safetensors")
    with pytest.raises(LoRAError, match="is not a LoRA weight"):
        _open(tmp_path, tiny_dir, config=None)


# ----------------------------------------------------------------------------- bad adapters: one line each
def _pad_in(tensors):
    key = "base_lm.layers.0.self_attn.q_proj.lora_A"
    tensors[key] = torch.cat([tensors[key], torch.zeros(4, 8)], 1)


def _renamed(old, new):
    def change(tensors):
        for suffix in (".lora_A", ".lora_B"):
            tensors[new + suffix] = tensors.pop(old + suffix)
    return change


def _drop_layer(tensors):
    for key in [k for k in tensors if k.startswith("residual_lm.layers.1.")]:
        del tensors[key]


def _nan(tensors):
    tensors["feat_decoder.estimator.decoder.layers.0.self_attn.o_proj.lora_B"][0, 0] = float("nan")


def _rank(tensors):
    key = "lm_to_dit_proj"
    tensors[key + ".lora_A"], tensors[key + ".lora_B"] = torch.randn(8, 128), torch.randn(128, 8)


def _lonely(tensors):
    del tensors["enc_to_lm_proj.lora_B"]


@pytest.mark.parametrize("change,words", [
    (_pad_in, "is for another model size"),
    (_renamed("base_lm.layers.0.self_attn.q_proj", "base_lm.layers.7.self_attn.q_proj"), "match no module"),
    (_renamed("base_lm.layers.0.self_attn.q_proj", "feat_encoder.encoder.layers.0.self_attn.q_proj"),
     "not layers voxcpm's LoRA adapts"),
    (_drop_layer, "has no weights for 4 of the 31 layers"),
    (_nan, "NaN or infinite"),
    (_rank, "rank mismatch: lm_to_dit_proj has r=8"),
    (_lonely, "enc_to_lm_proj has lora_A but not its partner"),
], ids=["other-size", "no-such-layer", "never-adapted", "fewer-layers", "nan", "two-ranks", "half-pair"])
def test_bad_adapter_weights(tiny_dir, adapter_copy, change, words):
    _rewrite(adapter_copy, change)
    for config in ("train.yaml", None):
        with pytest.raises(LoRAError, match=words.replace("(", r"\(")) as info:
            _open(adapter_copy, tiny_dir, config=config)
        assert "\n" not in str(info.value) and ": " in str(info.value)


def _set(**fields):
    return lambda data: data["lora"].update(fields)


@pytest.mark.parametrize("change,words", [
    (_set(r=8), "rank mismatch: .* says r=8 but the adapter's tensors have rank 4"),
    (_set(enable_proj=False), r"are not adapted by .*enable_proj"),
    (_set(target_modules_lm=["q_proj", "k_proj", "v_proj"]), r"are not adapted by .*enable_lm"),
    (_set(target_modules_dit=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj"]), "has no weights for 2 of"),
    (_set(alhpa=32), "alhpa is not a LoRAConfig field"),
    (_set(r="four"), "the lora settings are not valid"),
    (lambda data: data.update(sample_rate=16000), "trained at sample_rate 16000"),
    (lambda data: data.pop("lora"), "a training config without a lora: section"),
], ids=["rank", "proj-off", "lm-targets", "dit-targets", "typo", "type", "sample-rate", "full-finetune-yaml"])
def test_bad_configs(tiny_dir, adapter_copy, change, words):
    config = _rewrite_config(adapter_copy, change, "bad.yaml")
    with pytest.raises(LoRAError, match=words):
        _open(adapter_copy, tiny_dir, config=config)


def test_missing_and_unparsable_config(tiny_dir, adapter_copy):
    with pytest.raises(LoRAError, match="does not exist"):
        _open(adapter_copy, tiny_dir, config=adapter_copy / "nowhere.yaml")
    (adapter_copy / "broken.yaml").write_text("lora: {r: 4, alpha: [8\n")
    with pytest.raises(LoRAError, match="is not valid YAML"):
        _open(adapter_copy, tiny_dir, config="broken.yaml")
    (adapter_copy / "broken.json").write_text('{"r": 4,')
    with pytest.raises(LoRAError, match="is not valid JSON"):
        _open(adapter_copy, tiny_dir, config="broken.json")


def test_base_named_by_the_config_must_be_the_model(tiny_dir, tiny_never_stop_dir, adapter_copy):
    """The training YAML's pretrained_path: the same folder passes without hashing, another local checkpoint
    with other weights is refused, one that is not on this machine is said to be unchecked."""
    from convert.manifest import weights_sha256

    assert "the model given" in _open(adapter_copy, tiny_dir, weights_of=weights_sha256).base_check
    other = _rewrite_config(adapter_copy, lambda d: d.update(pretrained_path=str(tiny_never_stop_dir)), "other.yaml")
    with pytest.raises(LoRAError, match="model.safetensors differs"):
        _open(adapter_copy, tiny_dir, config=other, weights_of=weights_sha256)
    away = _rewrite_config(adapter_copy, lambda d: d.update(pretrained_path="/data/VoxCPM1.5"), "away.yaml")
    assert "not on this machine" in _open(adapter_copy, tiny_dir, config=away, weights_of=weights_sha256).base_check
