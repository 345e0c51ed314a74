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
