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


def test_mixed_dtypes_in_one_type_domain_load(tmp_path):
    """coremltools writes a batch_norm with fp16 mean/variance and its default epsilon as fp32, then its
    own reader refuses the package; the loader accepts it (the other input checks still run)."""
    import torch

    mean, var = np.array([0.1, 0.2], np.float16), np.array([1.0, 2.0], np.float16)

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 2, 3, 3))], opset_version=ct.target.iOS17)
    def prog(x):
        return mb.batch_norm(x=x, mean=mean, variance=var)

    ct.convert(prog, minimum_deployment_target=ct.target.iOS17, compute_precision=ct.precision.FLOAT32,
               skip_model_load=True).save(str(tmp_path / "bn.mlpackage"))
    m = MilModel.from_path(tmp_path / "bn.mlpackage")
    x = np.random.default_rng(0).random((1, 2, 3, 3), np.float32)
    want = torch.nn.functional.batch_norm(torch.from_numpy(x), torch.from_numpy(mean.astype(np.float32)),
                                          torch.from_numpy(var.astype(np.float32)), eps=1e-5).numpy()
    np.testing.assert_allclose(next(iter(m.predict({m.inputs[0].name: x}).values())), want, atol=1e-6)
