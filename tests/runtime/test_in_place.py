"""fp16 rounding writes into a kernel's own new output, never into a value anybody else holds."""
import numpy as np
import coremltools as ct
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import types

from runtime.mil import MilModel

N = 10_000  # above the size where the rounding goes through torch (runtime/fp16.py)


def _record_outputs(model):
    """Wrap every step's kernel to keep what it returned, by op name."""
    returned = {}
    for step in model._plan._unfused_steps:
        def wrapped(a, op, kernel=step.kernel):
            returned[op.name] = out = kernel(a, op)
            return out
        step.kernel = wrapped
    return returned


def test_a_new_fp16_output_is_rounded_where_the_kernel_put_it():
    @mb.program(input_specs=[mb.TensorSpec((N,), dtype=types.fp16)], opset_version=ct.target.iOS17)
    def prog(x):
        return mb.mul(x=x, y=np.float16(3.0), name="tripled")

    model = MilModel.from_program(prog, compute="fp16")
    returned = _record_outputs(model)
    x = np.linspace(-1, 1, N, dtype=np.float32)
    trace = model.trace({"x": x})
    assert trace["tripled"] is returned["tripled"], "rounded into a new array instead of the kernel's own"
    want = (x.astype(np.float16).astype(np.float32) * 3).astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(trace["tripled"], want)


def test_a_constant_a_kernel_passes_through_is_never_rounded_in_place():
    const = np.full(N, 0.1, np.float32)  # not an fp16 value

    @mb.program(input_specs=[mb.TensorSpec((N,), dtype=types.fp16)], opset_version=ct.target.iOS17)
    def prog(x):
        c = mb.cast(x=mb.const(val=const, name="tenth"), dtype="fp16", name="tenth_fp16")  # cast returns its input
        return mb.add(x=x, y=c)

    model = MilModel.from_program(prog, compute="fp16")
    out = next(iter(model.predict({"x": np.zeros(N, np.float32)}).values()))
    assert np.all(model._plan.consts["tenth"] == np.float32(0.1)), "the constant was rounded in place"
    np.testing.assert_array_equal(out, np.float16(0.1))
