"""One conversion function for every declared component: patched torch module -> FP16 (or FP32 reference) ML Program.

Functional components are captured with `torch.jit.trace` (see TRIALS.md, "capture method"): the
published components are functional (LM caches are inputs and outputs, written with a scatter),
so tracing records every op, converts ~10x faster than torch.export and is verified not to bake
the example position (tests/convert/test_position_independence.py, and the runtime interpreter
at positions 0..511). A component with Core ML states (its buffers written in place) is captured
with `torch.export`, which keeps the writes that a trace drops, and converted for its declared
deployment target (macOS 15: states). Names, shapes, dtypes, flexible ranges, states, the fp32
region and the model parts all come from the component's declaration (`contract/`), never from here.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from contract.components import ComponentSpec, TensorSpec
from patches import modules

EXAMPLE_POSITION = 3        # not 0: a trace that baked it would be wrong at 0 and the tests would see it
WEIGHT_OPS = {"linear", "matmul", "conv", "conv_transpose"}


def _coreml_input(spec: TensorSpec):
    import coremltools as ct

    shape = list(spec.shape)
    for axis, (lo, hi) in (spec.flexible or {}).items():
        shape[axis] = ct.RangeDim(lower_bound=lo, upper_bound=hi, default=spec.shape[axis])
    return ct.TensorType(name=spec.name, shape=ct.Shape(shape), dtype=_np_dtype(spec))


def _np_dtype(spec: TensorSpec):
    # fp16 floats carry no dtype: with FLOAT16 compute precision on macOS14 they become fp16
    return {"int32": np.int32, "fp32": np.float32}.get(spec.dtype)


def is_fp32_build(spec: ComponentSpec) -> bool:
    """The FP32 reference build: its declaration has fp32 floats (`Layout.for_precision("fp32")`)."""
    return any(t.dtype == "fp32" for t in spec.inputs + spec.outputs)


def example_shape(spec: TensorSpec) -> tuple[int, ...]:
    """The declared shape, with every flexible axis at twice its default (within range): a trace that
    baked the default length would then show at the default."""
    shape = list(spec.shape)
    for axis, (lo, hi) in (spec.flexible or {}).items():
        shape[axis] = min(hi, 2 * spec.shape[axis])
    return tuple(shape)


def examples(spec: ComponentSpec, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Example inputs for the trace, in declaration order; int32 inputs hold EXAMPLE_POSITION."""
    generator = torch.Generator().manual_seed(seed)

    def one(tensor: TensorSpec) -> torch.Tensor:
        if tensor.dtype == "int32":
            return torch.full(example_shape(tensor), EXAMPLE_POSITION, dtype=torch.int32)
        return 0.5 * torch.randn(example_shape(tensor), generator=generator)

    return tuple(one(t) for t in spec.inputs)


def trace(module: torch.nn.Module, example: tuple) -> torch.jit.ScriptModule:
    # TracerWarnings here are about Python-level asserts on constant shapes (the VAE's `pad == 0`)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.trace(module.eval(), example, check_trace=False)


def export(module: torch.nn.Module, example: tuple):
    """torch.export with the ATen decompositions coremltools expects: in-place buffer writes are kept
    as buffer mutations, which become Core ML state updates (a trace drops them, TRIALS.md)."""
    with torch.no_grad():
        return torch.export.export(module.eval(), example).run_decompositions({})


def fp32_subgraph_of(inputs: set[str]):
    """An op selector for FP16ComputePrecision: fp16 everywhere except the ops computed from
    `inputs` and constants alone, which stay fp32.

    LocDiT's timestep embedding is sin/cos(1000 * t * freq): in fp16 the argument (up to 1000,
    spacing 0.5) is off by up to 0.25 rad, which put the velocity 1.2e-2 (rel-L2) away from FP32
    on the tiny fixture; in fp32 it is 4.0e-3 (TRIALS.md, "locdit timestep embedding").
    """
    memo: dict[str, bool] = {}

    def only_from_inputs(var) -> bool:
        if var.op is None:
            return var.name in inputs
        if var.op.op_type == "const":
            return True
        if var.name not in memo:
            memo[var.name] = all(only_from_inputs(v) for v in _op_inputs(var.op))
        return memo[var.name]

    # weights stay fp16: the region ends at the first linear layer, whose input (sin/cos) is in [-1, 1]
    return lambda op: op.op_type in WEIGHT_OPS or not all(only_from_inputs(v) for v in _op_inputs(op))


def _op_inputs(op):
    for value in op.inputs.values():
        yield from (value if isinstance(value, (list, tuple)) else [value])


def to_coreml(traced, spec: ComponentSpec):
    """An FP16 ML Program for the declared target (macOS14; macOS15 with states) with exactly the declared
    input/output/state names (FP32 compute and I/O when the declaration has fp32 floats: the reference
    build, where the fp32 region is moot; states stay fp16, the only kind Core ML has)."""
    import coremltools as ct

    if is_fp32_build(spec):
        precision = ct.precision.FLOAT32
    elif spec.fp32_inputs:
        precision = ct.transform.FP16ComputePrecision(op_selector=fp32_subgraph_of(set(spec.fp32_inputs)))
    else:
        precision = ct.precision.FLOAT16
    states = [ct.StateType(wrapped_type=ct.TensorType(shape=t.shape, dtype=np.float16), name=t.name)
              for t in spec.states]
    return ct.convert(traced, inputs=[_coreml_input(t) for t in spec.inputs],
                      outputs=[ct.TensorType(name=t.name, dtype=_np_dtype(t)) for t in spec.outputs],
                      states=states or None, convert_to="mlprogram",
                      minimum_deployment_target=getattr(ct.target, spec.deployment_target), compute_precision=precision)


def convert(spec: ComponentSpec, model):
    """The ML Program of component `spec`, from the patched model (its torch module in patches.modules)."""
    capture = export if spec.states else trace
    program = capture(modules.build(spec, model), examples(spec))
    mlmodel = to_coreml(program, spec)
    del program
    return mlmodel


def drop_parts(model, done: ComponentSpec, remaining: list[ComponentSpec]) -> None:
    """Release the weights of `done`'s model parts that no component in `remaining` reads, so that peak
    memory falls as conversion proceeds (the full model is 3.2 GB in fp32)."""
    still_needed = {path for spec in remaining for path in spec.parts}
    for path in done.parts:
        if path in still_needed:
            continue
        *owners, last = path.split(".")
        owner = model
        for attr in owners:
            owner = getattr(owner, attr)
        setattr(owner, last, None)
