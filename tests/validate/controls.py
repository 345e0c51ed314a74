"""Deliberately broken packages: every one must fail validation (tests/validate/test_controls.py)."""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import torch

BLOB_HEADER = struct.Struct("<IIQQ")  # sentinel, dtype, size in bytes, data offset (MIL blob metadata)


def out_dir_with(root: Path, source_out: Path, precision: str, component: str, build) -> Path:
    """A fresh OUT holding one package, written by `build(path)`, and the source's manifest."""
    out = Path(root)
    (out / precision).mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(source_out) / "manifest.json", out / "manifest.json")
    build(out / precision / f"{component}.mlpackage")
    return out


def _lm_iface(checkpoint: Path, component: str):
    from contract.published import declare

    return declare(json.loads((Path(checkpoint) / "config.json").read_text()))[component]


def _convert(checkpoint: Path, component: str, wrap, path: Path) -> None:
    from checkpoint.loading import load_voxcpm
    from convert.converters import examples, to_coreml, trace
    from contract.quiet import quiet_conversion_bars
    from patches.apply import patch_model
    from patches.modules import build

    quiet_conversion_bars()
    iface = _lm_iface(checkpoint, component)
    inner = build(iface, patch_model(load_voxcpm(checkpoint)))
    to_coreml(trace(wrap(inner), examples(iface)), iface).save(str(path))


class BakedPosition(torch.nn.Module):
    """Ignores its `position` input: the trace bakes position 3 (rope row, cache slot, mask)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, embed, position, *caches):
        return self.inner(embed, torch.full((1,), 3, dtype=torch.int32), *caches)


class DroppedWrite(torch.nn.Module):
    """Returns its input caches unchanged: what a trace of an in-place view write leaves."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, embed, position, *caches):
        outputs = self.inner(embed, position, *caches)
        return (*outputs[: len(outputs) - len(caches)], *caches)


class ContextsNotCarried(torch.nn.Module):
    """A streaming decoder that ignores the contexts it is handed (zeros instead): every call restarts."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, latent, *contexts):
        return self.inner(latent, *[torch.zeros_like(c) for c in contexts])


def contexts_not_carried(checkpoint: Path, component: str):
    return lambda path: _convert(checkpoint, component, ContextsNotCarried, path)


def baked_position(checkpoint: Path, component: str):
    return lambda path: _convert(checkpoint, component, BakedPosition, path)


def dropped_write(checkpoint: Path, component: str):
    return lambda path: _convert(checkpoint, component, DroppedWrite, path)


def global_int8(fp16_package: Path):
    """int8 with a *global* config and a low threshold: RoPE tables and norms get quantized too."""
    def build(path: Path) -> None:
        import coremltools as ct
        import coremltools.optimize.coreml as cto

        config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
            mode="linear_symmetric", dtype="int8", weight_threshold=64))
        mlmodel = ct.models.MLModel(str(fp16_package), skip_model_load=True)
        cto.linear_quantize_weights(mlmodel, config).save(str(path))
    return build


def corrupt_weight(package: Path, const_name: str, factor: float = 1.5) -> None:
    """Scale one fp16 weight of a saved package in place, in its weight.bin blob."""
    import coremltools as ct

    mlmodel = ct.models.MLModel(str(package), skip_model_load=True)
    function = mlmodel.get_spec().mlProgram.functions["main"]
    block = function.block_specializations[function.opset]
    op = next(op for op in block.operations if op.type == "const" and op.outputs[0].name == const_name)
    offset = op.attributes["val"].blobFileValue.offset
    weights = Path(mlmodel.weights_dir) / "weight.bin"
    with open(weights, "r+b") as handle:
        handle.seek(offset)
        _, _, size, data_offset = BLOB_HEADER.unpack(handle.read(BLOB_HEADER.size))
        handle.seek(data_offset)
        values = np.frombuffer(handle.read(size), dtype=np.float16).astype(np.float32) * factor
        handle.seek(data_offset)
        handle.write(values.astype(np.float16).tobytes())


# ----------------------------------------------------------------------------- the fast layout's lm package
def fast_lm(checkpoint: Path, broken: dict, **options):
    """A builder of the fast layout's `lm` package (`options`: the layout's) in which function f's module is
    `broken[f](function_spec, model)` instead of its own: the rest converted, merged and described as
    `convert` does."""
    def build_package(path: Path) -> None:
        from checkpoint.loading import load_voxcpm
        from contract.layout import declare, option_metadata
        from contract.quiet import quiet_conversion_bars
        from convert.converters import capture, examples, to_coreml
        from convert.multifunction import Functions
        from convert.packaging import describe
        from patches.apply import patch_model
        from patches.modules import build

        quiet_conversion_bars()
        layout = declare(json.loads((Path(checkpoint) / "config.json").read_text()), "fast", **options)
        spec, model = layout["lm"], patch_model(load_voxcpm(checkpoint))
        models = {}
        for function in spec.functions:
            make = broken.get(function.name)
            module = (make(function, model) if make else build(function, model)).eval()
            models[function.name] = to_coreml(capture(module, function, examples(function)), function)
        functions = Functions(spec, models)
        describe(functions, spec, "fp16", layout.name, str(checkpoint), "control", option_metadata(layout))
        functions.save(path)
    return build_package


def fast_out_with(root: Path, source_out: Path, build) -> Path:
    """A fresh OUT holding the fp16 fast `lm` package written by `build(path)`, and the source's manifest."""
    from contract.artifacts import package_path

    out = Path(root)
    path = package_path(out, "fp16", "lm", "fast")
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(source_out) / "manifest.json", out / "manifest.json")
    build(path)
    return out


def _step(function, model, cls):
    return cls(model, state_caches=function.state_caches, **function.options)


def step_without_last_write(function, model):
    """`step` whose last cache write (the residual LM's last value cache) writes the state's own value back:
    what a capture that loses an in-place write leaves."""
    from unittest import mock

    from patches.fast_lm import LMStep
    from patches.kv_cache import slice_write

    class DroppedStateWrite(LMStep):
        def forward(self, feat, position):
            writes = []

            def write(cache, begin, states):
                writes.append(cache)
                if len(writes) == 2 * (len(self.base_lm.layers) + len(self.residual_lm.layers)):
                    return cache.copy_(cache.clone())
                return slice_write(cache, begin, states)

            with mock.patch("patches.chunk.slice_write", write):
                return super().forward(feat, position)

    return _step(function, model, DroppedStateWrite)


def step_at_a_baked_position(function, model):
    """`step` that ignores its `position` input: every call reads RoPE row 3 and writes cache slot 3."""
    from patches.fast_lm import LMStep

    class BakedStatePosition(LMStep):
        def forward(self, feat, position):
            return super().forward(feat, torch.full((1,), 3, dtype=torch.int32))

    return _step(function, model, BakedStatePosition)


def prefill_with_fsq_everywhere(function, model):
    """`prefill` that applies FSQ (and adds the embedding to the residual input) at text positions too."""
    from patches.fast_lm import LMPrefill

    class FSQAtTextPositions(LMPrefill):
        def _lms(self, embeds, audio, start, keep=None):
            return super()._lms(embeds, None, start, keep)

    return FSQAtTextPositions(model, state_caches=function.state_caches, **function.options)


def merge_with_alpha(adapter, model):
    """A wrong LoRA merge: W + alpha·B·A instead of W + alpha/r·B·A (r times the update)."""
    with torch.no_grad():
        for module, (a, b) in adapter.tensors.items():
            model.get_submodule(module).weight += adapter.settings.alpha * (b @ a)
    return model


def merge_without_projections(adapter, model):
    """A wrong LoRA merge: the LM and DiT layers merged, the three projections (which end up in OUT/constants,
    in no package) left as the base has them."""
    from contract.artifacts import PROJECTIONS

    with torch.no_grad():
        for module, (a, b) in adapter.tensors.items():
            if module not in PROJECTIONS:
                model.get_submodule(module).weight += adapter.settings.scale * (b @ a)
    return model
