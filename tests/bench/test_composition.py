"""bench.composition: both layouts composed as the generator runs them, against the FP32 torch reference."""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_both_layouts_compose_to_the_same_error(tiny_dir, tiny_both_coreml, tmp_path):
    from bench.composition import main

    status = main(["--model", str(tiny_dir), "--out", str(tiny_both_coreml), "--prompt",
                   str(ROOT / "validate" / "data" / "speech_en_44k.wav"), "--text", "Hello, this is a test.",
                   "--precisions", "int8,fp16", "--steps", "3", "--report-dir", str(tmp_path)])
    report = json.loads((tmp_path / "composition.json").read_text())
    rows = {(r["layout"], r["precision"]): r for r in report["rows"]}
    assert status == 0 and set(rows) == {(l, p) for l in ("published", "fast") for p in ("int8", "fp16")}
    # the fused lm composes int8 errors exactly as the published packages chained do (TRIALS.md)
    published, fast = rows["published", "int8"], rows["fast", "int8"]
    assert abs(fast["mu_all_rel_l2"] - published["mu_all_rel_l2"]) < 0.1 * published["mu_all_rel_l2"]
    # and int8 is measurably further from torch than fp16: the measurement sees quantization
    assert rows["fast", "fp16"]["mu_all_rel_l2"] < 0.5 * fast["mu_all_rel_l2"]
