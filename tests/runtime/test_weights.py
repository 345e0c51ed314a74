"""Weights: linear's are packed once at load (fp16 where the CPU multiplies fp16), and constants
no kernel reads are not kept."""
import numpy as np
import pytest
import coremltools as ct
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import types

from runtime.mil import MilModel
from runtime.mil.kernels import linalg

torch = pytest.importorskip("torch")

IN, OUT = 64, 96


def _linear_program(also_added=False):
    rng = np.random.default_rng(0)
    weight = (0.1 * rng.standard_normal((OUT, IN))).astype(np.float16)
    bias = (0.1 * rng.standard_normal(OUT)).astype(np.float16)

    @mb.program(input_specs=[mb.TensorSpec((3, IN), dtype=types.fp16)], opset_version=ct.target.iOS17)
    def prog(x):
        w = mb.const(val=weight, name="w")
        y = mb.linear(x=x, weight=w, bias=bias, name="y")
        if also_added:  # the weight is read by a second op that takes it as it is
            return y, mb.add(x=w, y=np.float16(1.0), name="w_plus_one")
        return y

    return prog, weight.astype(np.float32), bias.astype(np.float32)


def _feed():
    return {"x": np.random.default_rng(1).standard_normal((3, IN)).astype(np.float16).astype(np.float32)}


def _weight_arg(model):
    step = next(s for s in model._plan.steps if s.info.op_type == "linear")
    return next(ref for p, _, ref in step.args if p == "weight")


@pytest.mark.parametrize("fp16_gemm", [True, False])
def test_linear_weights_are_packed_once_and_released_as_constants(monkeypatch, fp16_gemm):
    monkeypatch.setattr(linalg, "FP16_GEMM", fp16_gemm)
    prog, weight, bias = _linear_program()
    model = MilModel.from_program(prog, compute="fp16")
    packed = _weight_arg(model)
    assert isinstance(packed, torch.Tensor) and packed.dtype == (torch.float16 if fp16_gemm else torch.float32)
    assert "w" not in model._plan.consts, "the plain fp32 weight is still held beside the packed one"
    x = _feed()["x"]
    got = model.predict({"x": x})["y"]
    want = (x @ weight.T + bias).astype(np.float16)
    ulps = np.abs(got.astype(np.float16).view(np.int16).astype(int) - want.view(np.int16).astype(int))
    assert ulps.max() <= 1 and np.mean(ulps > 0) < 0.02  # only the order of the fp32 sums differs


def test_fp32_mode_keeps_fp32_weights(monkeypatch):
    monkeypatch.setattr(linalg, "FP16_GEMM", True)
    prog, weight, bias = _linear_program()
    model = MilModel.from_program(prog, compute="fp32")
    assert _weight_arg(model).dtype == torch.float32
    x = _feed()["x"]
    np.testing.assert_allclose(model.predict({"x": x})["y"], x @ weight.T + bias, rtol=1e-5, atol=1e-5)


def test_a_weight_another_op_reads_stays_a_constant(monkeypatch):
    monkeypatch.setattr(linalg, "FP16_GEMM", True)
    prog, weight, _ = _linear_program(also_added=True)
    model = MilModel.from_program(prog, compute="fp16")
    assert "w" in model._plan.consts
    np.testing.assert_array_equal(model.predict(_feed())["w_plus_one"], (weight + 1).astype(np.float16))


def test_int8_data_read_only_by_dequantisation_is_not_kept(built):
    _, path = built("decoder_trace")
    model = MilModel.from_path(path.with_name("dec_trace_int8.mlpackage"))
    kept = [n for n, v in model._plan.consts.items() if isinstance(v, np.ndarray) and v.dtype == np.int8]
    assert not kept, f"{len(kept)} int8 arrays kept that only the dequantisation reads (at load)"



def test_a_few_row_linear_runs_on_torchs_threads_with_the_same_fp16_bits(monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 9, 1024)).astype(np.float16).astype(np.float32)  # locdit_step's rows
    weight = torch.from_numpy((0.03 * rng.standard_normal((4096, 1024))).astype(np.float16))
    seen = []
    real_linear = torch.nn.functional.linear
    monkeypatch.setattr(torch.nn.functional, "linear", lambda *a: seen.append(torch.get_num_threads()) or real_linear(*a))
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(linalg.linear({"x": x, "weight": weight}, None))
    finally:
        torch.set_num_threads(threads)
    one, two = results
    assert seen == [1, 2] and torch.get_num_threads() == threads
    assert np.array_equal(one.astype(np.float16).view(np.uint16), two.astype(np.float16).view(np.uint16))
