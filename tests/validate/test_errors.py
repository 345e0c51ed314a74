"""Bad input: one line `error: ...`, exit status 2, nothing loaded."""
import shutil

import pytest

from validate.cli import main


def _error(capsys, argv):
    status = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return status, err


def test_out_without_packages(tiny_dir, tmp_path, capsys):
    status, err = _error(capsys, ["--model", str(tiny_dir), "--out", str(tmp_path)])
    assert status == 2 and len(err) == 1 and err[0].startswith("error: ") and "no converted packages" in err[0]


def test_missing_out(tiny_dir, tmp_path, capsys):
    status, err = _error(capsys, ["--model", str(tiny_dir), "--out", str(tmp_path / "nope")])
    assert status == 2 and len(err) == 1 and "does not exist" in err[0]


@pytest.mark.parametrize("argv,words", [
    (["--precision", "int4"], "unknown precision"),
    (["--components", "vocoder"], "unknown component"),
    (["--backend", "gpu"], "unknown backend"),
    (["--steps", "0"], "--steps"),
    (["--decoder-lengths", "a,b"], "--decoder-lengths"),
])
def test_bad_flags(tiny_dir, tmp_path, capsys, argv, words):
    status, err = _error(capsys, ["--model", str(tiny_dir), "--out", str(tmp_path), *argv])
    assert status == 2 and len(err) == 1 and err[0].startswith("error: ") and words in err[0]


def test_precision_not_converted(tiny_dir, validate_tiny_out, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(validate_tiny_out / "fp16", out / "fp16")
    status, err = _error(capsys, ["--model", str(tiny_dir), "--out", str(out), "--precision", "int8"])
    assert status == 2 and len(err) == 1 and "no int8 packages" in err[0]


def test_bad_gates_file(tiny_dir, tmp_path, capsys):
    gates = tmp_path / "gates.json"
    gates.write_text('{"fp16": {"corr": "high"}}')
    status, err = _error(capsys, ["--model", str(tiny_dir), "--out", str(tmp_path), "--gates", str(gates)])
    assert status == 2 and len(err) == 1 and "fp16.corr" in err[0]


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "--localize" in capsys.readouterr().out
