"""Validation of base + LoRA adapter against voxcpm's own LoRA model (the adapter live, unmerged): the
converted packages pass; the base's packages, and conversions with a wrong merge, fail (negative controls)."""
import json

import pytest

from tests.helpers import program_and_weights
from tests.validate import controls

from .conftest import FAST, TINY_GATES, lora_args

ADAPTED = "locdit_step,residual_lm_step,base_lm_step"     # the components a LoRA adapter changes
PROJECTION_CHECKS = {f"{p} on the host equals the reference" for p in ("enc_to_lm_proj", "lm_to_dit_proj",
                                                                        "res_to_dit_proj")}


def _validate(checkpoint, out, adapter, report_dir, *args) -> tuple[int, dict]:
    from validate.cli import main

    status = main(["--model", str(checkpoint), "--out", str(out), "--backend", "mil", *FAST,
                   "--report-dir", str(report_dir), *lora_args(adapter), *map(str, args)])
    return status, json.loads((report_dir / "report.json").read_text())


def _failing(report) -> set:
    return {(r["name"], r["output"]) for r in report["components"] if r["gated"] and not r["passed"]}


def _failing_checks(report) -> set:
    return {c["check"] for c in report["checks"] + report["structural"] if not c["passed"]}


def test_lora_packages_pass_against_voxcpm_lora_model(tiny_never_stop_dir, never_stop_adapter, lora_out, tmp_path):
    status, report = _validate(tiny_never_stop_dir, lora_out, never_stop_adapter, tmp_path, "--precision", "all",
                               "--components", "feat_encoder," + ADAPTED, "--gates", TINY_GATES)
    assert status == 0, report["failure"]
    assert {(r["name"], r["precision"]) for r in report["components"] if r["gated"]} == {
        (c, p) for c in ("feat_encoder", *ADAPTED.split(",")) for p in ("fp16", "int8")}
    checks = {c["check"]: c for c in report["checks"] if c["component"] in ("constants", "manifest")}
    assert PROJECTION_CHECKS <= set(checks) and all(c["passed"] for c in checks.values())
    assert any(name.startswith("converted with the LoRA adapter validated against") for name in checks)
    assert report["adapter"]["config"]["r"] == 4 and len(report["adapter"]["sha256"]) == 64
    assert "the adapter live in its LoRALinear layers" in (tmp_path / "report.md").read_text()


def test_vae_packages_are_the_base_conversion(lora_out, tiny_never_stop_coreml):
    """voxcpm's LoRA never adapts the AudioVAE: its packages are the base conversion's, program and weights."""
    for name in ("audio_vae_encoder", "audio_vae_decoder", "feat_encoder"):
        package = f"fp16/{name}.mlpackage"
        assert program_and_weights(lora_out / package) == program_and_weights(tiny_never_stop_coreml / package)


def test_base_packages_fail_against_the_lora_model(tiny_never_stop_dir, never_stop_adapter, tiny_never_stop_coreml,
                                                    tmp_path, capsys):
    """The adapter mattered: the base's own packages, held to voxcpm's LoRA model, fail on every adapted part."""
    status, report = _validate(tiny_never_stop_dir, tiny_never_stop_coreml, never_stop_adapter, tmp_path,
                               "--precision", "fp16", "--components", ADAPTED)
    assert status == 1 and "validation FAILED" in capsys.readouterr().err
    assert {("locdit_step", "velocity"), ("residual_lm_step", "res_hidden"), ("residual_lm_step", "caches"),
            ("base_lm_step", "lm_hidden"), ("base_lm_step", "caches")} <= _failing(report)
    failed = _failing_checks(report)
    assert PROJECTION_CHECKS <= failed
    assert any(c.startswith("converted with the LoRA adapter") for c in failed)


@pytest.fixture(scope="module")
def wrong_merge_out(tiny_never_stop_dir, never_stop_adapter, tmp_path_factory):
    """OUT of a conversion whose merge is `merge` (the converter's merge seam swapped)."""
    from convert import pipeline
    from convert.cli import main

    def convert(merge):
        out = tmp_path_factory.mktemp(merge.__name__) / "out"
        original = pipeline.merge_adapter
        pipeline.merge_adapter = merge
        try:
            assert main(["--model", str(tiny_never_stop_dir), "--out", str(out), "--precision", "fp16",
                         "--components", "locdit_step,residual_lm_step", *lora_args(never_stop_adapter)]) == 0
        finally:
            pipeline.merge_adapter = original
        return out
    return convert


def test_alpha_instead_of_alpha_over_r_fails(tiny_never_stop_dir, never_stop_adapter, wrong_merge_out, tmp_path):
    out = wrong_merge_out(controls.merge_with_alpha)
    status, report = _validate(tiny_never_stop_dir, out, never_stop_adapter, tmp_path, "--precision", "fp16")
    assert status == 1
    assert {("locdit_step", "velocity"), ("residual_lm_step", "res_hidden"),
            ("residual_lm_step", "caches")} <= _failing(report)
    assert PROJECTION_CHECKS <= _failing_checks(report)


def test_merge_without_projections_fails(tiny_never_stop_dir, never_stop_adapter, wrong_merge_out, tmp_path, capsys):
    """The projections live in OUT/constants, in no package: every package passes and the constants checks
    alone catch it."""
    out = wrong_merge_out(controls.merge_without_projections)
    status, report = _validate(tiny_never_stop_dir, out, never_stop_adapter, tmp_path, "--precision", "fp16")
    assert status == 1 and "constants fp32: lm_to_dit_proj on the host equals the reference fails" in \
        capsys.readouterr().err
    assert _failing(report) == set()
    assert _failing_checks(report) == PROJECTION_CHECKS


@pytest.mark.parametrize("args,words", [
    (["--lora", "nowhere"], "LoRA adapter nowhere does not exist"),
    (["--lora-config", "train.yaml"], "--lora-config needs --lora"),
], ids=["no-adapter", "config-alone"])
def test_bad_adapter_is_one_line(tiny_never_stop_dir, lora_out, tmp_path, capsys, args, words):
    from validate.cli import main

    status = main(["--model", str(tiny_never_stop_dir), "--out", str(lora_out), "--report-dir", str(tmp_path),
                   *FAST, *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith("error: ") and words in err[0]
    assert not (tmp_path / "report.json").exists()
