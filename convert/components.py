"""One conversion function per component: patched torch module -> FP16 (or FP32 reference) ML Program.

Every component is captured with `torch.jit.trace` (see TRIALS.md, "capture method"): the six
published components are functional (LM caches are inputs and outputs, written with a scatter),
so tracing records every op, converts ~10x faster than torch.export and is verified not to bake
the example position (tests/convert/test_position_independence.py, and the runtime interpreter
at positions 0..511). Shapes, names and dtypes come from `convert.interface`, never from here.
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import torch

from patches import components as parts

from .interface import ComponentInterface, TensorSpec

EXAMPLE_POSITION = 3        # not 0: a trace that baked it would be wrong at 0 and the tests would see it
EXAMPLE_DECODER_FRAMES = 8  # not the RangeDim default, for the same reason


def quiet_coremltools() -> None:
    """Silence coremltools' own per-pass progress bars: our per-component bar says what runs."""
    from tqdm import tqdm

    import coremltools.converters.mil.frontend.torch.ops as torch_ops
    import coremltools.converters.mil.mil.passes.pass_pipeline as pass_pipeline
    import coremltools.optimize.coreml._post_training_quantization as ptq
    import coremltools.optimize.coreml._quantization_passes as qpasses

    silent = functools.partial(tqdm, disable=True)
    torch_ops._tqdm = silent
    pass_pipeline.tqdm = silent
    ptq.tqdm = silent
    qpasses.tqdm = silent


def _coreml_input(spec: TensorSpec):
    import coremltools as ct

    shape = list(spec.shape)
    for axis, (lo, hi) in (spec.flexible or {}).items():
        shape[axis] = ct.RangeDim(lower_bound=lo, upper_bound=hi, default=spec.shape[axis])
    return ct.TensorType(name=spec.name, shape=ct.Shape(shape), dtype=_np_dtype(spec))


def _np_dtype(spec: TensorSpec):
    # fp16 floats carry no dtype: with FLOAT16 compute precision on macOS14 they become fp16
    return {"int32": np.int32, "fp32": np.float32}.get(spec.dtype)


def is_fp32_build(iface: ComponentInterface) -> bool:
    """The FP32 reference build: its interface declares fp32 floats (convert.interface, float_dtype)."""
    return any(t.dtype == "fp32" for t in iface.inputs + iface.outputs)


def _example(spec: TensorSpec, generator: torch.Generator, shape=None) -> torch.Tensor:
    shape = shape or spec.shape
    if spec.dtype == "int32":
        return torch.full(shape, EXAMPLE_POSITION, dtype=torch.int32)
    return 0.5 * torch.randn(shape, generator=generator)


def examples(iface: ComponentInterface, overrides: dict | None = None, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Example inputs at the declared shapes (or `overrides[name]` shapes)."""
    generator = torch.Generator().manual_seed(seed)
    overrides = overrides or {}
    return tuple(_example(spec, generator, overrides.get(spec.name)) for spec in iface.inputs)


def trace(module: torch.nn.Module, example: tuple) -> torch.jit.ScriptModule:
    # TracerWarnings here are about Python-level asserts on constant shapes (the VAE's `pad == 0`)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.trace(module.eval(), example, check_trace=False)


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


WEIGHT_OPS = {"linear", "matmul", "conv", "conv_transpose"}


def _op_inputs(op):
    for value in op.inputs.values():
        yield from (value if isinstance(value, (list, tuple)) else [value])


def to_coreml(traced, iface: ComponentInterface, fp32_from: set[str] | None = None):
    """An FP16 ML Program for macOS14 with exactly the declared input/output names (FP32 compute
    and I/O when the interface declares fp32 floats: the reference build, where `fp32_from` is moot)."""
    import coremltools as ct

    if is_fp32_build(iface):
        precision = ct.precision.FLOAT32
    elif fp32_from:
        precision = ct.transform.FP16ComputePrecision(op_selector=fp32_subgraph_of(fp32_from))
    else:
        precision = ct.precision.FLOAT16
    return ct.convert(traced, inputs=[_coreml_input(s) for s in iface.inputs],
                      outputs=[ct.TensorType(name=s.name, dtype=_np_dtype(s)) for s in iface.outputs],
                      convert_to="mlprogram", minimum_deployment_target=ct.target.macOS14,
                      compute_precision=precision)


def _convert(wrapper: torch.nn.Module, iface: ComponentInterface, overrides: dict | None = None,
             fp32_from: set[str] | None = None):
    traced = trace(wrapper, examples(iface, overrides))
    mlmodel = to_coreml(traced, iface, fp32_from)
    del traced
    return mlmodel


# ----------------------------------------------------------------------------- the six components
def build_wrapper(name: str, model, max_context: int) -> torch.nn.Module:
    """The torch module whose forward is component `name` (see patches.components)."""
    builders = {
        "audio_vae_encoder": lambda: parts.AudioVAEEncoder(model),
        "audio_vae_decoder": lambda: parts.AudioVAEDecoder(model),
        "feat_encoder": lambda: parts.FeatEncoder(model),
        "locdit_step": lambda: parts.LocDiTStep(model),
        "residual_lm_step": lambda: parts.ResidualLMStep(model, max_context),
        "base_lm_step": lambda: parts.BaseLMStep(model, max_context),
    }
    return builders[name]().eval()


def convert_audio_vae_encoder(model, iface: ComponentInterface):
    return _convert(build_wrapper(iface.name, model, 0), iface)


def convert_audio_vae_decoder(model, iface: ComponentInterface):
    # trace at a length other than the RangeDim default, so a baked length would show
    latent = iface.inputs[0]
    shape = (*latent.shape[:2], EXAMPLE_DECODER_FRAMES)
    return _convert(build_wrapper(iface.name, model, 0), iface, {latent.name: shape})


def convert_feat_encoder(model, iface: ComponentInterface):
    return _convert(build_wrapper(iface.name, model, 0), iface)


def convert_locdit_step(model, iface: ComponentInterface):
    return _convert(build_wrapper(iface.name, model, 0), iface, fp32_from={"t", "dt"})


def convert_residual_lm_step(model, iface: ComponentInterface):
    return _convert(build_wrapper(iface.name, model, iface.extra["max_context"]), iface)


def convert_base_lm_step(model, iface: ComponentInterface):
    return _convert(build_wrapper(iface.name, model, iface.extra["max_context"]), iface)


CONVERTERS = {
    "audio_vae_encoder": convert_audio_vae_encoder,
    "audio_vae_decoder": convert_audio_vae_decoder,
    "feat_encoder": convert_feat_encoder,
    "locdit_step": convert_locdit_step,
    "residual_lm_step": convert_residual_lm_step,
    "base_lm_step": convert_base_lm_step,
}

# The parts of VoxCPMModel each component reads; once no later component needs a part it is
# dropped, so peak memory falls as conversion proceeds (the full model is 3.2 GB in fp32).
MODEL_PARTS = {
    "audio_vae_encoder": [("audio_vae", "encoder")],
    "audio_vae_decoder": [("audio_vae", "decoder")],
    "feat_encoder": [("feat_encoder",)],
    "locdit_step": [("feat_decoder",)],
    "residual_lm_step": [("residual_lm",)],
    "base_lm_step": [("base_lm",), ("fsq_layer",), ("stop_proj",), ("stop_head",)],
}

# Conversion order: smallest parts first and the base LM last, so each is freed as soon as done.
ORDER = ["audio_vae_encoder", "audio_vae_decoder", "feat_encoder", "locdit_step", "residual_lm_step", "base_lm_step"]


def drop_parts(model, done: str, remaining: list[str]) -> None:
    """Release the weights of `done`'s model parts that no component in `remaining` reads."""
    still_needed = {path for name in remaining for path in MODEL_PARTS[name]}
    for path in MODEL_PARTS[done]:
        if path in still_needed:
            continue
        owner = model
        for attr in path[:-1]:
            owner = getattr(owner, attr)
        setattr(owner, path[-1], None)
