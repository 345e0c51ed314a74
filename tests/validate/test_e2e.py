"""The end-to-end ASR check of `python -m validate` (validate/e2e.py).

On the tiny fixture the speech is noise: the rows are produced and reported, never gated. The
component part is cut to one cheap component so that the e2e part is what these tests pay for.
"""
import json
from pathlib import Path

import pytest

from validate import e2e

from .conftest import TINY_GATES

ROW_KEYS = {"text", "language", "prompt", "precision", "backend", "transcript", "wer_or_cer", "passed",
            "reference_transcript", "reference_wer_or_cer", "gated", "metric"}
CHEAP = ["--backend", "mil", "--precision", "int8", "--components", "feat_encoder", "--steps", "1",
         "--decoder-lengths", "4", "--no-progress", "--gates", str(TINY_GATES)]


@pytest.fixture(scope="module")
def whisper():
    """One Whisper load for the module: validate.e2e keeps it (lru_cache) for every run in the process."""
    return e2e.asr_model(None)


def _run(tiny_dir, out, report_dir, *args):
    from validate.cli import main

    status = main(["--model", str(tiny_dir), "--out", str(out), "--report-dir", str(report_dir), *CHEAP,
                   *map(str, args)])
    return status, json.loads((Path(report_dir) / "report.json").read_text())


# ----------------------------------------------------------------------------- gating (pure)
def test_a_good_english_row_passes_and_a_bad_wer_fails():
    assert e2e.judge("wer", 0.1, 0.9)          # absolute: the reference does not matter
    assert e2e.judge("wer", 0.3, None)
    assert not e2e.judge("wer", 0.31, 0.0)
    assert e2e.judge("wer", 0.5, None, max_wer=0.6)  # configurable
    assert not e2e.judge("wer", None, 0.0)     # unscoreable audio


def test_chinese_cer_is_judged_against_the_reference():
    assert e2e.judge("cer", 0.45, 0.40)        # 0.45 <= 0.40 + 0.1
    assert e2e.judge("cer", 0.50, 0.40)
    assert not e2e.judge("cer", 0.55, 0.40)
    assert not e2e.judge("cer", 0.2, 0.0)      # a perfect reference leaves only the margin
    assert e2e.judge("cer", 0.2, 0.0, cer_margin=0.25)


def test_summary_gates_only_when_asked():
    good = {"precision": "int8", "language": "en", "prompt": False, "metric": "wer", "wer_or_cer": 0.1,
            "reference_wer_or_cer": 0.1, "text": "a", "transcript": "a", "passed": True}
    bad = dict(good, wer_or_cer=0.9, passed=False, transcript="b")
    assert e2e.summarize([good], gated=True) == {"passed": True, "failure": ""}
    gated = e2e.summarize([good, bad], gated=True)
    assert not gated["passed"] and "WER 0.90" in gated["failure"]
    assert e2e.summarize([good, bad], gated=False) == {"passed": True, "failure": ""}


def test_fixture_detection_and_precisions(tiny_dir, tmp_path):
    assert e2e.is_fixture(tiny_dir) and not e2e.is_fixture(tmp_path)
    assert e2e.e2e_precisions(("fp16", "int8")) == ("int8",)
    assert e2e.e2e_precisions(("fp16",)) == ("fp16",)


def test_sentences_are_small_bilingual_digit_free():
    kinds = {(s.language, s.prompt) for s in e2e.SENTENCES}
    assert kinds == {("en", False), ("en", True), ("zh", False), ("zh", True)}
    assert not any(ch.isdigit() for s in e2e.SENTENCES for ch in s.text)


# ----------------------------------------------------------------------------- the tiny fixture
def test_tiny_rows_are_reported_not_gated(tiny_dir, tiny_coreml, whisper, tmp_path, capsys):
    status, report = _run(tiny_dir, tiny_coreml, tmp_path, "--e2e-max-len", 6)
    section = report["e2e"]
    assert status == 0 and report["passed"] is True, report["failure"]
    assert section["status"] == "run" and section["gated"] is False and "fixture" in section["gate_reason"]
    rows = section["rows"]
    assert [(r["text"], r["prompt"]) for r in rows] == [(s.text, s.prompt) for s in e2e.SENTENCES]
    for row in rows:
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row["precision"] == "int8" and row["backend"] == "mil" and row["gated"] is False
        assert row["metric"] == ("cer" if row["language"] == "zh" else "wer")
        assert isinstance(row["wer_or_cer"], float) and isinstance(row["reference_wer_or_cer"], float)
        assert 1 <= row["patches"] <= 6 and 1 <= row["reference_patches"] <= 6
    markdown = (tmp_path / "report.md").read_text()
    assert "| precision | lang | prompt |" in markdown and "not gated" in markdown
    printed = capsys.readouterr().out
    assert "e2e not gated" in printed and "info" in printed
    print("\n" + section["markdown"])


def test_no_e2e_skips_it(tiny_dir, tiny_coreml, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("e2e ran")

    monkeypatch.setattr(e2e, "run_e2e", boom)
    monkeypatch.setattr(e2e, "check_asr", boom)
    status, report = _run(tiny_dir, tiny_coreml, tmp_path, "--no-e2e")
    assert status == 0 and report["passed"] is True
    assert report["e2e"]["status"] == "skipped" and "e2e" not in report["phase_seconds"]
    # each phase's memory is in the report beside its time, to find what holds the peak at full size
    memory = report["phase_memory_mib"]
    assert set(memory) == set(report["phase_seconds"])
    assert all(0 < m["rss"] <= m["peak"] for m in memory.values())
    assert [m["peak"] for m in memory.values()] == sorted(m["peak"] for m in memory.values())
