"""bench.layouts on the tiny conversion holding both layouts: the counts the issue's goals are about."""
import json

from bench import layouts


def test_layouts_bench_counts_calls_bytes_and_prefill_per_layout(tiny_both_coreml, tmp_path):
    result = layouts.measure(tiny_both_coreml, "mil", patches=1, progress=lambda _: None)
    layouts.write(result, tmp_path)
    saved = json.loads((tmp_path / "layouts.json").read_text())
    rows = {(r["layout"], r["precision"]): r for r in saved["rows"]}
    assert set(rows) == {(layout, p) for layout in ("published", "fast") for p in ("fp16", "int8")}
    for precision in ("fp16", "int8"):
        fast, published = rows["fast", precision], rows["published", precision]
        # fast: diffusion + lm.step; published: base, residual, feat_encoder and 9 LocDiT passes
        assert fast["calls_per_patch"] == 2 == fast["measured_calls_per_patch"]
        assert published["calls_per_patch"] == 12 == published["measured_calls_per_patch"]
        # tiny: the published caches [1, 2, 512, 16] x 2 x 5 layers in and out, fp16; the fast layout none
        assert published["bytes_per_patch"] > 2 * 2 * 5 * 2 * 512 * 16 * 2 > 100 * fast["bytes_per_patch"]
        assert fast["bytes_per_patch"] < 16 * 1024
        # 100 tokens + audio-start + a 10 s prompt (63 patches) = 164 positions: 11 chunks of 16 here (3 of the
        # default 64: tests/contract/test_fast.py); published: base + residual LM per position, and the
        # feature encoder at the 63 prompt positions
        assert fast["prefill_positions"] == published["prefill_positions"] == 164
        assert fast["prefill_calls"] == 11 and published["prefill_calls"] == 2 * 164 + 63
        assert fast["weight_bytes_per_patch"] > 0 and fast["patches_per_second"] > 0
        assert fast["package_mib"]["lm"] > 0 and fast["convert_peak_rss_mib"] > 0
    assert rows["fast", "int8"]["weight_bytes_per_patch"] < rows["fast", "fp16"]["weight_bytes_per_patch"]
    assert "| fast | fp16 | 2 |" in (tmp_path / "layouts.md").read_text()
