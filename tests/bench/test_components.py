"""bench.components' code path on the tiny fixture (the full-size numbers are measured by `make bench`, not here)."""
import json

from bench import components as bench


def test_component_bench_times_both_packages_against_torch(tiny_dir, tiny_coreml, tmp_path, capsys):
    names = ("feat_encoder", "locdit_step", "base_lm_step")
    result = bench.run(tiny_dir, tiny_coreml, tmp_path, runs=3, components=names, budget_s=5.0)
    saved = json.loads((tmp_path / "components.json").read_text())
    assert [r["component"] for r in saved["rows"]] == list(names)
    for row in saved["rows"]:
        assert row["torch"]["min_s"] <= row["torch"]["median_s"] <= row["torch"]["max_s"]
        for precision in ("fp16", "int8"):
            timing = row[precision]
            assert timing["calls"] == 3 and timing["ratio"] == timing["median_s"] / row["torch"]["median_s"]
            assert timing["accuracy"]["corr"] > 0.999, (row["component"], precision, timing["accuracy"])
    assert saved["rows"][2]["inputs"]["k0"][2] == saved["max_context"]  # the LM step gets its full caches
    assert saved["rounds"] == bench.ROUNDS and len(saved["loadavg_1min"]) == 2
    assert result["rows"][0]["fp16"]["median_s"] == saved["rows"][0]["fp16"]["median_s"]
    out = capsys.readouterr().out
    assert "| locdit_step |" in out and "int8 / torch" in out


def test_missing_packages_are_skipped_before_the_checkpoint_is_loaded(tmp_path, caplog):
    assert bench.run("no/such/checkpoint", tmp_path / "empty", tmp_path, runs=1) is None
    assert "convert first" in caplog.text


def test_torch_is_timed_under_the_interpreters_allocator_setting(monkeypatch):
    """Torch's side runs with the allocator setting the interpreter's runs get (its VAE calls were
    2.2-2.7x slower without it): the ratio compares computation, not glibc settings."""
    import contextlib

    import numpy as np

    import runtime

    entered = []

    @contextlib.contextmanager
    def recording():
        entered.append(True)
        yield

    monkeypatch.setattr(runtime, "run_allocator", recording)
    seen = []
    call = bench._torch_call(lambda x: seen.append(len(entered)) or x, {"x": np.zeros(3, np.float32)})
    call()
    assert seen == [1]
