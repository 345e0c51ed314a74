"""Interrupted runs never damage good artifacts; re-runs skip what is current; --force redoes it."""
import json
import os
import signal
import subprocess
import sys
import time

from contract.atomic import FAIL_HOOK_ENV

from .conftest import ROOT, artifact_hashes, leftovers, run_convert


def _args(tiny_dir, out, *extra):
    return ["--model", tiny_dir, "--out", out, *extra]


def test_crash_while_writing_keeps_previous_artifacts(tiny_dir, copy_of_out):
    before = artifact_hashes(copy_of_out)
    result = run_convert(*_args(tiny_dir, copy_of_out, "--precision", "all", "--force", "--components", "locdit_step"),
                         env_extra={FAIL_HOOK_ENV: "locdit_step.mlpackage"})
    assert result.returncode == 3, result.stderr[-2000:]  # os._exit mid-write, no cleanup ran
    assert any(".tmp-" in name for name in leftovers(copy_of_out))  # the half-written package is there ...
    assert artifact_hashes(copy_of_out) == before                   # ... but every good one is untouched
    # the next run cleans up after the dead one and finds everything current
    again = run_convert(*_args(tiny_dir, copy_of_out, "--precision", "all"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert leftovers(copy_of_out) == []
    assert artifact_hashes(copy_of_out) == before


def test_failure_while_writing_is_one_line_and_keeps_artifacts(tiny_dir, copy_of_out):
    before = artifact_hashes(copy_of_out)
    result = run_convert(*_args(tiny_dir, copy_of_out, "--precision", "int8", "--force", "--components", "feat_encoder"),
                         env_extra={FAIL_HOOK_ENV: "feat_encoder.mlpackage:raise"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in result.stderr
    assert artifact_hashes(copy_of_out) == before and leftovers(copy_of_out) == []


def test_sigkill_during_conversion_keeps_previous_artifacts(tiny_dir, copy_of_out):
    before = artifact_hashes(copy_of_out)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", FAIL_HOOK_ENV: "base_lm_step.mlpackage:hang"}
    process = subprocess.Popen([sys.executable, "-m", "convert", *_args(tiny_dir, copy_of_out, "--precision", "fp16",
                                                                         "--force")],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and process.poll() is None:
            if list(copy_of_out.glob("fp16/.base_lm_step.tmp-*/PARTIAL")):
                break  # mid-write of the last component, after five were already replaced
            time.sleep(0.02)
        assert process.poll() is None, "the run ended before a package was being written"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    after = artifact_hashes(copy_of_out)
    assert after["fp16/base_lm_step.mlpackage"] == before["fp16/base_lm_step.mlpackage"]
    # every artifact is whole: the old one or a complete new one, never a mix
    from convert.check_specs import check_out

    assert all(not row["problems"] for row in check_out(copy_of_out))


def test_rerun_skips_everything_current(tiny_dir, copy_of_out):
    manifest_before = json.loads((copy_of_out / "manifest.json").read_text())
    before = artifact_hashes(copy_of_out)
    result = run_convert(*_args(tiny_dir, copy_of_out, "--precision", "all"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loading" not in result.stderr  # nothing to build: the checkpoint is not even loaded
    table = [line for line in result.stdout.splitlines() if "up to date" in line or "built" in line]
    assert len(table) == 13 and all("up to date" in line for line in table)
    assert artifact_hashes(copy_of_out) == before
    after = json.loads((copy_of_out / "manifest.json").read_text())
    assert after["artifacts"] == manifest_before["artifacts"]


def test_force_redoes_the_chosen_components(tiny_dir, copy_of_out):
    manifest_before = json.loads((copy_of_out / "manifest.json").read_text())["artifacts"]
    result = run_convert(*_args(tiny_dir, copy_of_out, "--precision", "int8", "--force", "--components", "feat_encoder"))
    assert result.returncode == 0, result.stderr[-2000:]
    built = [line.split()[:2] for line in result.stdout.splitlines() if line.rstrip().endswith("built")]
    assert built == [["constants", "fp32+fp16"], ["feat_encoder", "int8"]]
    manifest = json.loads((copy_of_out / "manifest.json").read_text())["artifacts"]
    assert manifest["fp16/feat_encoder"] == manifest_before["fp16/feat_encoder"]   # not asked for: untouched
    assert manifest["fp16/base_lm_step"] == manifest_before["fp16/base_lm_step"]
    assert manifest["int8/feat_encoder"]["inputs_key"] == manifest_before["int8/feat_encoder"]["inputs_key"]
    assert leftovers(copy_of_out) == []


def test_changed_weights_are_rebuilt(tiny_dir, copy_of_out, tmp_path):
    import shutil

    from checkpoint.fixture import build_fixture

    other = build_fixture(tmp_path / "other", seed=5)
    result = run_convert("--model", other, "--out", copy_of_out, "--precision", "fp16", "--components", "locdit_step")
    assert result.returncode == 0, result.stderr[-2000:]
    built = [line.split()[0] for line in result.stdout.splitlines() if line.rstrip().endswith("built")]
    assert built == ["constants", "locdit_step"]
    shutil.rmtree(other)
