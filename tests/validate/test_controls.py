"""Negative controls: conversions with known defects must fail validation, naming the component."""
import pytest

from tests.validate import controls
from tests.validate.conftest import run_validate


def _failed(report, component, precision):
    return [r for r in report["components"] if r["name"] == component and r["precision"] == precision
            and not r["passed"]]


def _structural(report, component, check):
    return next(c for c in report["structural"] if c["component"] == component and c["check"].startswith(check))


@pytest.fixture(scope="module")
def baked_out(tiny_dir, validate_tiny_out, tmp_path_factory):
    return controls.out_dir_with(tmp_path_factory.mktemp("baked"), validate_tiny_out, "fp16", "base_lm_step",
                                 controls.baked_position(tiny_dir, "base_lm_step"))


def test_baked_position_fails(tiny_dir, baked_out, capsys):
    status, report = run_validate(tiny_dir, baked_out, "--precision", "fp16", "--components", "base_lm_step")
    assert status == 1
    assert "base_lm_step" in capsys.readouterr().err
    assert {r["output"] for r in _failed(report, "base_lm_step", "fp16")} >= {"caches", "lm_hidden"}
    assert not _structural(report, "base_lm_step", "cache outputs depend on position")["passed"]


def test_dropped_cache_write_fails(tiny_dir, validate_tiny_out, tmp_path, capsys):
    out = controls.out_dir_with(tmp_path, validate_tiny_out, "fp16", "residual_lm_step",
                                controls.dropped_write(tiny_dir, "residual_lm_step"))
    status, report = run_validate(tiny_dir, out, "--precision", "fp16", "--components", "residual_lm_step")
    assert status == 1
    assert "residual_lm_step" in capsys.readouterr().err
    # numerically this one passes in the MIL interpreter: its in-place scatter writes into the input
    # array that the passthrough output aliases (TRIALS.md); the structural checks are what catch it
    assert not _structural(report, "residual_lm_step", "no cache output is a passthrough")["passed"]
    assert not _structural(report, "residual_lm_step", "cache outputs depend on position")["passed"]


def test_globally_quantized_rope_tables_fail_structurally(tiny_dir, validate_tiny_out, tmp_path, capsys):
    out = controls.out_dir_with(tmp_path, validate_tiny_out, "int8", "base_lm_step",
                                controls.global_int8(validate_tiny_out / "fp16" / "base_lm_step.mlpackage"))
    status, report = run_validate(tiny_dir, out, "--precision", "int8", "--components", "base_lm_step")
    assert status == 1
    err = capsys.readouterr().err
    assert "base_lm_step int8: only linear/conv weights are quantized fails" in err
    check = _structural(report, "base_lm_step", "only linear/conv weights are quantized")
    assert not check["passed"] and "gather" in check["detail"]  # the RoPE tables feed a gather
