"""make bench's code path on a tiny decoder (the full-size numbers are measured by `make bench`, not here)."""
import json

from bench import runtime_step as bench

from tests.runtime.helpers import TINY


def test_bench_reports_times_ratio_and_accuracy(tmp_path, capsys):
    result = bench.run(dict(TINY), tmp_path, runs=2)
    saved = json.loads((tmp_path / "runtime.json").read_text())
    assert saved["ratio"] == result["ratio"] > 0
    assert saved["mil_step_min_s"] <= saved["mil_step_s"] and saved["torch_step_min_s"] <= saved["torch_step_s"]
    assert saved["hidden"]["corr"] >= 0.9999 and saved["cache_max_rel_l2"] <= 5e-3
    assert "ratio of medians" in capsys.readouterr().out
