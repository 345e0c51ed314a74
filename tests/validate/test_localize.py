"""Localisation names the op whose weight was corrupted."""
import shutil

from tests.validate import controls
from tests.validate.conftest import run_validate

CORRUPTED = "loc_enc_encoder_layers_1_mlp_up_proj_weight_to_fp16"


def test_localisation_names_the_corrupted_op(tiny_dir, validate_tiny_out, tmp_path):
    out = tmp_path / "out"
    (out / "fp16").mkdir(parents=True)
    shutil.copy(validate_tiny_out / "manifest.json", out)
    package = out / "fp16" / "feat_encoder.mlpackage"
    shutil.copytree(validate_tiny_out / "fp16" / "feat_encoder.mlpackage", package)
    controls.corrupt_weight(package, CORRUPTED)
    status, report = run_validate(tiny_dir, out, "--precision", "fp16", "--components", "feat_encoder")
    assert status == 1
    (entry,) = report["localization"]
    first = entry["first_divergent"]
    assert entry["component"] == "feat_encoder" and first["op_type"] == "linear"
    assert first["torch_module"] == "loc_enc.encoder.layers.1.mlp.up_proj"
    assert first["input_agrees"] is True
    from validate.structural import load_function

    op = next(op for op in load_function(package).operations if op.outputs[0].name == first["output"])
    assert op.inputs["weight"].name == CORRUPTED
    assert "the op itself" in entry["summary"]


def test_localize_flag_on_a_good_package_finds_nothing(tiny_dir, validate_tiny_out, tmp_path):
    out = tmp_path / "out"
    (out / "fp16").mkdir(parents=True)
    shutil.copy(validate_tiny_out / "manifest.json", out)
    shutil.copytree(validate_tiny_out / "fp16" / "feat_encoder.mlpackage", out / "fp16" / "feat_encoder.mlpackage")
    status, report = run_validate(tiny_dir, out, "--precision", "fp16", "--components", "feat_encoder", "--localize")
    assert status == 0
    (entry,) = report["localization"]
    assert entry["first_divergent"] is None and entry["matched_ops"] > 10
