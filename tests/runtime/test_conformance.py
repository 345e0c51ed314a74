"""A small fixed sample of coremltools' own op tests, run through the interpreter (runtime/conformance.py).

The whole run (python -m runtime.conformance) takes hours; this sample covers the ops added for
other people's models (recurrent, resize/resample, pooling, block moves, quantize, compressed
weights) in ~1 minute. Every executed case must pass, apart from the one failure class that no
runtime can pass: precision='fp32' cases whose program holds fp16 values while coremltools'
expected values come from unrounded (or fp16-numpy) arithmetic at atol 1e-4.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PATHS = ["iOS14/test_pool.py", "iOS16/test_image_resizing.py", "iOS17/test_image_resizing.py",
         "iOS18/test_recurrent.py", "iOS16/test_constexpr_ops.py", "iOS17/test_quantization.py",
         "iOS14/test_tensor_transformation.py"]
KEYWORD = ("not TestSliceByIndex and not TestConcat and not TestExpandDims and not TestSplit and not TestStack "
           "and not TestTranspose and not TestSliceBySize")
ARTIFACT = "mismatch (fp16 data, fp32 tolerance)"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("conformance") / "sample.json"
    cmd = [sys.executable, "-m", "runtime.conformance", "--paths", *PATHS, "-k", KEYWORD, "--sample", "40",
           "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(out.read_text())


def test_sample_runs_every_op_it_reaches(result):
    executed = {k: v for k, v in result["cases"].items() if v["executed"]}
    assert len(executed) >= 80
    ops = set().union(*(v["ops"] for v in executed.values()))
    assert {"gru", "max_pool", "resize", "crop_resize", "resample", "quantize", "dequantize",
            "constexpr_lut_to_dense", "depth_to_space", "reverse_sequence"} <= ops


def test_no_failure_but_the_fp16_data_artifact(result):
    failed = {k: v for k, v in result["cases"].items() if v["outcome"] == "failed"}
    real = {k: f"{v['reason']}: {v['message']}" for k, v in failed.items() if v["reason"] != ARTIFACT}
    assert not real, "\n".join(f"{k}\n  {m}" for k, m in list(real.items())[:10])
    assert all("precision='fp32'" in k for k in failed)  # the artifact only exists at fp32 tolerance
