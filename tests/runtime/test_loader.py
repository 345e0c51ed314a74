"""Loading packages whose types are not fully known: variadic ranks and unbounded input dimensions."""
import numpy as np
import coremltools as ct
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import get_new_symbol, types

from runtime.mil import MilModel


def test_variadic_rank_output_loads_and_runs(tmp_path):
    """fill with a shape of unknown length has a variadic-rank type, which coremltools 9.0's reader refuses."""
    @mb.program(input_specs=[mb.TensorSpec(shape=(get_new_symbol(),), dtype=types.int32)], opset_version=ct.target.iOS17)
    def prog(s):
        return mb.fill(shape=s, value=1.5)

    model = ct.convert(prog, minimum_deployment_target=ct.target.iOS17, skip_model_load=True,
                       inputs=[ct.TensorType(name="s", shape=(ct.RangeDim(1, 5),), dtype=np.int32)])
    model.save(str(tmp_path / "var.mlpackage"))
    m = MilModel.from_path(tmp_path / "var.mlpackage")
    np.testing.assert_array_equal(m.predict({"s": np.array([2, 3], np.int32)})["fill_0"], np.full((2, 3), 1.5))
    np.testing.assert_array_equal(m.predict({"s": np.array([1, 2, 2], np.int32)})["fill_0"], np.full((1, 2, 2), 1.5))


def test_symbolic_input_dimension(tmp_path):
    """(coremltools refuses an unbounded RangeDim for ML Programs: the widest bound it allows.)"""
    @mb.program(input_specs=[mb.TensorSpec(shape=(1, get_new_symbol()))], opset_version=ct.target.iOS17)
    def prog(x):
        return mb.reduce_sum(x=mb.mul(x=x, y=2.0), axes=[1])

    model = ct.convert(prog, minimum_deployment_target=ct.target.iOS17, skip_model_load=True,
                       inputs=[ct.TensorType(name="x", shape=(1, ct.RangeDim(1, 1 << 20)))],
                       compute_precision=ct.precision.FLOAT32)
    model.save(str(tmp_path / "unbounded.mlpackage"))
    m = MilModel.from_path(tmp_path / "unbounded.mlpackage")
    assert m.inputs[0].ranges == ((1, 1), (1, 1 << 20))
    x = np.ones((1, 100_000), np.float32)
    np.testing.assert_allclose(next(iter(m.predict({"x": x}).values())), [200_000.0])
