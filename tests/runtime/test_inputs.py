"""Input conversion: what Core ML converts (runtime/INPUTS.md), what it leaves undefined, the strict option."""
import numpy as np
import pytest
import torch
import coremltools as ct
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import types

from runtime import InputError
from runtime.describe import TensorDesc, check_inputs
from runtime.mil import MilModel


def _model(shape, dtype, strict=False):
    """A program returning its input unchanged (plus 0, so the output is computed)."""
    zero = np.zeros((), types.nptype_from_builtin(dtype))

    @mb.program(input_specs=[mb.TensorSpec(shape=shape, dtype=dtype)], opset_version=ct.target.iOS17)
    def prog(x):
        return mb.add(x=x, y=zero)

    m = MilModel.from_program(prog, strict_inputs=strict)
    name = m.inputs[0].name
    return lambda v: m.predict({name: v})[m.outputs[0].name]


def test_float_for_int32_is_truncated_toward_zero():
    """coremltools' test utilities pass every input as float32 (and Core ML takes it): Apple documents
    float -> int conversion of MLMultiArrays as rounding toward zero."""
    run = _model((6,), types.int32)
    got = run(np.array([1.7, -1.7, 2.5, -2.5, 0.99, 3.0], np.float32))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, [1, -1, 2, -2, 0, 3])
    assert not np.array_equal(got, np.round([1.7, -1.7, 2.5, -2.5, 0.99, 3.0]))  # not round-to-nearest
    np.testing.assert_array_equal(run(np.array([1.7, -1.7, 2.5, -2.5, 0.99, 3.0])), got)  # float64 alike


@pytest.mark.parametrize("bad,why", [(np.nan, "non-finite"), (np.inf, "non-finite"),
                                     (3e9, "outside the int32 range"), (-2.2e9, "outside the int32 range")])
def test_float_for_int32_undefined_values_are_refused(bad, why):
    run = _model((2,), types.int32)
    with pytest.raises(InputError, match=why):
        run(np.array([1.0, bad], np.float64))


def test_int64_for_int32_in_range_only():
    run = _model((3,), types.int32)
    np.testing.assert_array_equal(run(np.array([-5, 0, 2**31 - 1], np.int64)), [-5, 0, 2**31 - 1])
    with pytest.raises(InputError, match=r"2147483648 is outside the int32 range"):
        run(np.array([0, 0, 2**31], np.int64))  # would wrap to -2**31 with a plain cast
    np.testing.assert_array_equal(run([1, 2, 3]), [1, 2, 3])  # a list: numpy makes it int64


def test_ints_for_float_inputs_are_rounded_to_nearest():
    run32 = _model((2,), types.fp32)
    np.testing.assert_array_equal(run32(np.array([3, 2**24 + 1], np.int32)), [3.0, 2.0**24])
    run16 = _model((3,), types.fp16)
    got = run16(np.array([2049, 2051, 70000], np.int32))  # fp16 spacing is 2 above 2048; 70000 overflows
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, np.array([2048, 2052, np.inf], np.float16))


def test_float_widths_round_to_nearest_even():
    run16 = _model((2,), types.fp16)
    x64 = np.array([1 + 2**-11 + 2**-40, 1 + 2**-11])  # just above, and exactly at, a fp16 midpoint
    got = run16(x64)
    np.testing.assert_array_equal(got, np.array([1 + 2**-10, 1.0], np.float16))  # one rounding, not two
    np.testing.assert_array_equal(run16(x64.astype(np.float16)), x64.astype(np.float16))


def test_scalar_for_shape_one():
    run = _model((1,), types.fp32)
    np.testing.assert_array_equal(run(2.5), [2.5])
    np.testing.assert_array_equal(run(np.float32(2.5)), [2.5])
    with pytest.raises(InputError, match=r"got shape \(\)"):
        _model((2,), types.fp32)(2.5)  # only where shape (1,) is accepted: no broadcasting


def test_torch_tensors_and_lists():
    run = _model((2, 2), types.fp32)
    np.testing.assert_array_equal(run(torch.ones(2, 2, requires_grad=True)), np.ones((2, 2)))
    np.testing.assert_array_equal(run([[1, 2], [3, 4]]), [[1, 2], [3, 4]])


def test_non_numeric_is_refused():
    run = _model((2,), types.fp32)
    with pytest.raises(InputError, match="numeric"):
        run(np.array(["a", "b"]))
    with pytest.raises(InputError, match="numeric"):
        run(np.array([1 + 2j, 3j]))


def test_strict_option_keeps_the_toolkit_check():
    with pytest.raises(InputError, match=r"expected an integer array \(int32\), got float32"):
        _model((2,), types.int32, strict=True)(np.array([1.0, 2.0], np.float32))
    with pytest.raises(InputError, match=r"expected a float array \(float32\), got int32"):
        _model((2,), types.fp32, strict=True)(np.array([1, 2], np.int32))
    with pytest.raises(InputError, match=r"got shape \(\)"):
        _model((1,), types.fp32, strict=True)(2.5)
    np.testing.assert_array_equal(_model((2,), types.int32, strict=True)(np.array([1, 2], np.int64)), [1, 2])


def test_check_inputs_casts_for_the_coreml_backend():
    """The Core ML backend hands coremltools converted arrays (cast=True), the same values the interpreter runs."""
    descs = [TensorDesc("i", (3,), np.int32), TensorDesc("h", (2,), np.float16), TensorDesc("s", (1,), np.float32)]
    out = check_inputs({"i": np.array([1.9, -1.9, 7.0]), "h": np.array([1, 70000]), "s": 3}, descs)
    assert out["i"].dtype == np.int32 and out["h"].dtype == np.float16 and out["s"].shape == (1,)
    np.testing.assert_array_equal(out["i"], [1, -1, 7])
    np.testing.assert_array_equal(out["h"], np.array([1, np.inf], np.float16))


def test_coremltools_test_utility_feed_runs():
    """coremltools' run_core_ml_predict turns every input into float32 (and scalars into shape (1,))."""
    from coremltools.converters.mil.testing_utils import run_core_ml_predict

    @mb.program(input_specs=[mb.TensorSpec(shape=(4, 3)), mb.TensorSpec(shape=(2,), dtype=types.int32)],
                opset_version=ct.target.iOS17)
    def prog(table, idx):
        return mb.gather(x=table, indices=idx, axis=0)

    model = MilModel.from_program(prog)
    names = [d.name for d in model.inputs]
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    feed = {names[0]: table, names[1]: np.array([3, 1], np.int32)}

    class Recorder:
        def predict(self, data, state=None):
            assert data[names[1]].dtype == np.float32  # what Core ML receives from the utility
            return model.predict(data)

    out = list(run_core_ml_predict(Recorder(), dict(feed)).values())[0]
    np.testing.assert_array_equal(out, table[[3, 1]])


def test_after_coremltools_predict_preparation(tmp_path):
    """MLModel.predict's own Python side (torch -> numpy, float16 -> float32) hands the interpreter
    arrays it converts like Core ML: float for int32 truncated, fp32 for fp16 rounded."""
    @mb.program(input_specs=[mb.TensorSpec(shape=(3,), dtype=types.int32), mb.TensorSpec(shape=(3,), dtype=types.fp16)],
                opset_version=ct.target.iOS17)
    def prog(i, h):
        return mb.add(x=mb.cast(x=i, dtype="fp16"), y=h)

    ml = ct.convert(prog, minimum_deployment_target=ct.target.iOS17, skip_model_load=True)
    ml.save(str(tmp_path / "m.mlpackage"))
    names = [f.name for f in ml.get_spec().description.input]
    data = {names[0]: torch.tensor([1.9, -2.9, 3.0]), names[1]: np.array([0.5, 0.25, 1 / 3], np.float16)}
    ml._convert_tensor_to_numpy(data)
    ml._update_float16_multiarray_input_to_float32(data)
    assert data[names[0]].dtype == np.float32 and data[names[1]].dtype == np.float32
    m = MilModel.from_path(tmp_path / "m.mlpackage")
    out = next(iter(m.predict(data).values()))
    np.testing.assert_array_equal(out, np.array([1.5, -1.75, 3 + np.float16(1 / 3)], np.float16))
