"""Expected failures: one line `error: <problem>: <fix>`, exit status 2, no traceback, artifacts intact."""
import shutil

import pytest

from .conftest import artifact_hashes, run_convert


def _assert_one_line_error(result):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == result.stderr.strip().splitlines()[-1], result.stderr[-2000:]
    assert ": " in errors[0][len("error: "):], errors[0]  # problem: fix
    return errors[0]


def test_unknown_precision(tiny_dir, tmp_path):
    line = _assert_one_line_error(run_convert("--model", tiny_dir, "--precision", "int4", "--out", tmp_path / "o"))
    assert "int4" in line


def test_unknown_component(tiny_dir, tmp_path):
    line = _assert_one_line_error(run_convert("--model", tiny_dir, "--components", "vocoder", "--out", tmp_path / "o"))
    assert "vocoder" in line


def test_unknown_option(tmp_path):
    _assert_one_line_error(run_convert("--precsion", "fp16", "--out", tmp_path / "o"))


def test_missing_model_dir(tmp_path):
    line = _assert_one_line_error(run_convert("--model", tmp_path / "nowhere", "--out", tmp_path / "o"))
    assert "nowhere" in line


def test_unwritable_out(tiny_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    line = _assert_one_line_error(run_convert("--model", tiny_dir, "--out", blocker / "out"))
    assert "cannot write" in line


@pytest.fixture
def truncated_checkpoint(tiny_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return broken


def test_truncated_safetensors_keeps_artifacts(truncated_checkpoint, copy_of_out):
    before = artifact_hashes(copy_of_out)
    line = _assert_one_line_error(run_convert("--model", truncated_checkpoint, "--out", copy_of_out,
                                              "--precision", "all"))
    assert "model.safetensors" in line
    assert artifact_hashes(copy_of_out) == before
