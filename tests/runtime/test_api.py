"""runtime.load API: backends, descriptions, input checking, errors."""
import logging
import sys

import numpy as np
import pytest
from coremltools.converters.mil import Builder as mb

import runtime
from runtime.mil import MilModel
from runtime.metrics import compare, passes

from .helpers import GATE, TINY


def _feed(model):
    return {d.name: np.zeros(d.shape, d.dtype) for d in model.inputs}


def test_auto_backend_is_logged(built, caplog):
    _, path = built("decoder_trace")
    with caplog.at_level(logging.INFO, logger="runtime"):
        model = runtime.load(path)
    assert model.backend == ("coreml" if sys.platform == "darwin" else "mil")
    assert "backend auto ->" in caplog.text


def test_descriptions(built):
    _, path = built("decoder_trace")
    model = runtime.load(path, backend="mil")
    names = [d.name for d in model.inputs]
    assert names[:2] == ["x", "position"]
    assert model.inputs[1].dtype == np.int32 and model.inputs[0].dtype == np.float16
    assert model.outputs[0].name == "hidden" and model.states == []


def test_wrong_name_is_named(built):
    _, path = built("decoder_trace")
    model = runtime.load(path, backend="mil")
    feed = _feed(model)
    feed["positon"] = feed.pop("position")
    with pytest.raises(runtime.InputError, match="positon"):
        model.predict(feed)
    del feed["positon"]
    with pytest.raises(runtime.InputError, match="missing.*position"):
        model.predict(feed)


def test_wrong_shape_and_dtype_are_named(built):
    _, path = built("decoder_trace")
    model = runtime.load(path, backend="mil")
    feed = _feed(model)
    feed["cache_1"] = np.zeros((1, 2, 31, 16), np.float32)
    with pytest.raises(runtime.InputError, match=r"'cache_1'.*\(1, 2, 32, 16\)"):
        model.predict(feed)
    feed = _feed(model)
    feed["x"] = np.zeros((1, TINY["hidden"]), np.float32)
    with pytest.raises(runtime.InputError, match="'x'.*rank 2 != 3"):
        model.predict(feed)
    feed = _feed(model)
    feed["position"] = np.array([1.5], np.float32)
    strict = runtime.load(path, backend="mil", strict_inputs=True)
    with pytest.raises(runtime.InputError, match="'position'.*integer"):
        strict.predict(feed)
    # Core ML's own conversion (the default) truncates toward zero: 1.5 runs as position 1
    as_one = dict(feed, position=np.array([1], np.int32))
    np.testing.assert_array_equal(model.predict(feed)["hidden"], model.predict(as_one)["hidden"])


def test_fp32_accepted_for_fp16_input(built):
    _, path = built("decoder_trace")
    model = runtime.load(path, backend="mil")
    feed = _feed(model)
    f16 = model.predict({k: (v.astype(np.float16) if v.dtype == np.float16 else v) for k, v in feed.items()})
    f32 = model.predict({k: (v.astype(np.float32) if v.dtype == np.float16 else v) for k, v in feed.items()})
    assert all(np.array_equal(f16[k], f32[k]) for k in f16)


def test_flexible_range_is_checked(built):
    _, path = built("convnet")
    model = runtime.load(path, backend="mil")
    with pytest.raises(runtime.InputError, match=r"'audio_feat'.*\(1, 4, 8\.\.64\)"):
        model.predict({"audio_feat": np.zeros((1, 4, 65), np.float32)})
    with pytest.raises(runtime.InputError, match="audio_feat"):
        model.predict({"audio_feat": np.zeros((1, 4, 7), np.float32)})
    assert model.predict({"audio_feat": np.zeros((1, 4, 8), np.float32)})["wave"].shape == (1, 1, 32)


def test_unknown_op_raises_naming_it():
    """Every op of the iOS15-18 opsets has a kernel; a dialect op the converter lowers before saving does not."""
    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4, 4, 4))])
    def prog(x):
        y = mb.relu(x=x)
        return mb.torch_upsample_nearest_neighbor(x=y, output_height=8, output_width=8, name="up_out")

    with pytest.raises(runtime.UnsupportedOpError, match=r"'torch_upsample_nearest_neighbor'.*up_out.*op #\d+ in function 'main'"):
        MilModel.from_program(prog)


def test_coreml_backend_off_macos_is_clear(built):
    if sys.platform == "darwin":
        pytest.skip("Core ML is available here")
    _, path = built("decoder_trace")
    with pytest.raises(runtime.BackendUnavailableError, match="macOS"):
        runtime.load(path, backend="coreml")


def test_bad_arguments(built):
    _, path = built("decoder_trace")
    with pytest.raises(ValueError, match="backend"):
        runtime.load(path, backend="tpu")
    with pytest.raises(ValueError, match="compute"):
        runtime.load(path, backend="mil", compute="int4")
    with pytest.warns(DeprecationWarning, match="compute="):  # the old name still works, and says so
        assert runtime.load(path, backend="mil", precision="fp32").compute == "fp32"
    with pytest.raises(ValueError, match="compiled"):
        runtime.load(path.with_suffix(".mlmodelc"), backend="mil")


def test_metrics_compare():
    a = np.arange(10, dtype=np.float32)
    m = compare(a, a)
    assert m == {"corr": 1.0, "rel_l2": 0.0, "max_abs": 0.0, "finite": True}
    m = compare(a + 1, a)
    assert m["max_abs"] == 1.0 and m["corr"] == pytest.approx(1.0) and m["rel_l2"] > 0.1
    assert not passes(m, **GATE) and passes(compare(a * 1.0001, a), **GATE)
    assert not compare(np.full(3, np.nan), np.ones(3))["finite"]
    with pytest.raises(ValueError, match="shape"):
        compare(a, a[:5])
