"""backend='coreml': the same comparisons against Core ML (macOS only)."""
import sys

import numpy as np
import pytest

import runtime

from .helpers import GATE, TINY, all_pass, rollout_functional, rollout_stateful, worst

pytestmark = pytest.mark.skipif(sys.platform != "darwin", reason="Core ML runs only on macOS")


@pytest.mark.parametrize("name", ["decoder_trace", "decoder_export"])
def test_coreml_functional_rollout(built, name):
    torch_model, path = built(name)
    model = runtime.load(path, backend="coreml", compute_units="CPU_ONLY")
    assert model.backend == "coreml"
    steps = rollout_functional(torch_model, model.predict, TINY)
    assert all_pass(steps), worst(steps)


def test_coreml_stateful_rollout(built):
    torch_model, path = built("stateful")
    model = runtime.load(path, backend="coreml", compute_units="CPU_ONLY")
    steps = rollout_stateful(torch_model, model, TINY)
    assert all_pass(steps), worst(steps)


def test_coreml_matches_interpreter_on_conv(built):
    _, path = built("convnet")
    x = np.random.default_rng(0).standard_normal((1, 4, 33)).astype(np.float32)
    a = runtime.load(path, backend="coreml", compute_units="CPU_ONLY").predict({"audio_feat": x})["wave"]
    b = runtime.load(path, backend="mil").predict({"audio_feat": x})["wave"]
    assert runtime.metrics.passes(runtime.metrics.compare(a, b), **GATE)


def test_coreml_baked_position_is_caught(built):
    torch_model, path = built("baked")
    steps = rollout_functional(torch_model, runtime.load(path, backend="coreml").predict, TINY)
    assert not all_pass(steps)
