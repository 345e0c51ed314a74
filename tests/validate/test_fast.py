"""`validate --layout fast` on the tiny fixture, and the fast layout's negative controls.

The passing run proves what the state rollouts compare: every state after every prefill call (a
chunk, an odd split, one position per call) and after every step of the rollouts, the chunked
prefills against the one-position one, the fused diffusion against voxcpm's own sampler. The
controls prove those comparisons can fail: a dropped state write, a baked position, FSQ at text
positions — each converted like the real package, each must fail validation, named.
"""
import json

import pytest

from contract.artifacts import report_dir
from contract.fast import prefill_calls
from tests.conftest import TEST_PREFILL_CHUNK
from tests.validate import controls
from tests.validate.conftest import FAST, TINY_GATES


def _validate(tiny_dir, out, *args) -> tuple[int, dict | None]:
    from validate.cli import main

    status = main(["--model", str(tiny_dir), "--out", str(out), "--backend", "mil", "--layout", "fast",
                   "--gates", str(TINY_GATES), *FAST, *map(str, args)])
    path = report_dir(out, "fast") / "report.json"
    return status, (json.loads(path.read_text()) if path.is_file() else None)


@pytest.fixture(scope="module")
def fast_validation(tiny_dir, tiny_both_coreml):
    return _validate(tiny_dir, tiny_both_coreml, "--precision", "all")


def _steps(report, output, precision) -> dict[str, list[int]]:
    """rollout -> the positions at which `output` was compared."""
    return {r["rollout"]: r["position"] for r in report["steps"] if r["output"] == output
            and r["precision"] == precision}


def test_fast_layout_passes_every_gate(fast_validation):
    status, report = fast_validation
    failed = [(r["name"], r["precision"], r["output"], r["worst"]) for r in report["components"] if not r["passed"]]
    assert status == 0 and not failed, failed
    assert report["layout"] == "fast"
    assert {r["name"] for r in report["components"]} == {"audio_vae_encoder", "audio_vae_decoder", "diffusion", "lm"}
    assert all(c["passed"] for c in report["structural"] + report["checks"])


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_every_state_is_compared_after_every_call(fast_validation, precision):
    _, report = fast_validation
    # three prefills of 27 positions (a chunk and a half, plus 3): 16, 7 and 1 new rows per call
    length = TEST_PREFILL_CHUNK + TEST_PREFILL_CHUNK // 2 + 3
    prefill = _steps(report, "prefill: states", precision)
    for rows in (16, 7, 1):
        calls = prefill_calls(length, TEST_PREFILL_CHUNK, 1024, rows)
        assert prefill[f"prefill, {rows} rows/call"] == [start + count - 1 for start, count in calls]
    # two rollouts of FAST's 8 steps: after the prefill, and ending at the last position of the context
    step = _steps(report, "step: states", precision)
    assert sorted(step.values()) == [list(range(length, length + 8)), list(range(1016, 1024))]
    chunked = [r for r in report["components"] if r["output"] == "prefill: chunked vs one position per call"
               and r["precision"] == precision]
    assert len(chunked) == 1 and chunked[0]["cases"] == 2 and chunked[0]["rel_l2"] < 1e-3


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_the_prefills_stop_logits_are_compared_as_a_series(fast_validation, precision):
    # one comparison over every prefill call's logits, as the step rollouts and the published layout compare
    # theirs: a single call's two logits give a correlation of +-1 (a full-size int8 run read -1)
    _, report = fast_validation
    rows = [r for r in report["components"] if r["output"] == "prefill: stop_logit" and r["precision"] == precision]
    length = TEST_PREFILL_CHUNK + TEST_PREFILL_CHUNK // 2 + 3
    calls = sum(len(prefill_calls(length, TEST_PREFILL_CHUNK, 1024, rows)) for rows in (16, 7, 1))
    assert len(rows) == 1 and rows[0]["cases"] == 1 and rows[0]["worst"]["case"] == f"3 prefills, {calls} calls"
    assert rows[0]["passed"]


def test_the_fused_diffusion_is_compared_with_voxcpms_sampler(fast_validation):
    _, report = fast_validation
    rows = [r for r in report["components"] if r["name"] == "diffusion" and r["gated"]]
    assert {r["precision"] for r in rows} == {"fp16", "int8"} and all(r["passed"] for r in rows)
    assert all(r["cases"] == 4 for r in rows)   # cfg 2, 3, 1 on speech, and a random case


def _control(tiny_dir, tiny_both_coreml, root, broken):
    out = controls.fast_out_with(root, tiny_both_coreml,
                                 controls.fast_lm(tiny_dir, broken, prefill_chunk=TEST_PREFILL_CHUNK))
    return _validate(tiny_dir, out, "--precision", "fp16", "--components", "lm")


def _failed_outputs(report) -> set[str]:
    return {r["output"] for r in report["components"] if r["name"] == "lm" and not r["passed"]}


def _structural(report, check) -> dict:
    return next(c for c in report["structural"] if c["component"] == "lm" and check in c["check"])


def test_a_dropped_state_write_fails(tiny_dir, tiny_both_coreml, tmp_path, capsys):
    status, report = _control(tiny_dir, tiny_both_coreml, tmp_path, {"step": controls.step_without_last_write})
    assert status == 1 and "lm" in capsys.readouterr().err
    assert "step: states" in _failed_outputs(report)
    check = _structural(report, "step: no state write is its own value read back")
    assert not check["passed"] and "residual_v1" in check["detail"]


def test_a_baked_position_fails(tiny_dir, tiny_both_coreml, tmp_path, capsys):
    status, report = _control(tiny_dir, tiny_both_coreml, tmp_path, {"step": controls.step_at_a_baked_position})
    assert status == 1 and "lm" in capsys.readouterr().err
    assert {"step: states", "step: mu"} <= _failed_outputs(report)
    assert not _structural(report, "step: state writes depend on the position")["passed"]


def test_fsq_at_text_positions_fails(tiny_dir, tiny_both_coreml, tmp_path, capsys):
    status, report = _control(tiny_dir, tiny_both_coreml, tmp_path,
                              {"prefill": controls.prefill_with_fsq_everywhere})
    assert status == 1 and "lm" in capsys.readouterr().err
    assert {"prefill: lm_hidden", "prefill: states"} <= _failed_outputs(report)
