"""Make a converted model a package an app developer can read: its interface described, then saved and compiled.

Every input, output and state carries its one-line description from the declaration (in every
function of a multifunction package), and the package its author, version, license and short
description (what Xcode shows), plus the toolkit's own keys (component, precision, layout, and the
layout's options: `contract.layout.option_metadata`). Packages are written atomically (contract.atomic).
"""
from __future__ import annotations

import sys
from pathlib import Path

from contract.atomic import write_atomically
from contract.components import ComponentSpec

AUTHOR = "voxcpm-coreml (converted from {source})"
LICENSE = "Apache-2.0 for the conversion; the weights keep the license of the checkpoint they came from"
COMPILE_SKIPPED = "compile skipped: needs macOS"


def describe(mlmodel, spec: ComponentSpec, precision: str, layout: str, source: str, version: str,
             options: dict | None = None, adapter: str | None = None) -> None:
    """Write the declaration's descriptions and the package metadata into `mlmodel`'s spec (a
    `convert.multifunction.Functions`: into each function's, and the package's). `options`: the
    layout's option metadata; `adapter`: the LoRA adapter merged into the weights, by file name and sha256."""
    for function in spec.functions:
        _describe_tensors(mlmodel.models[function.name], function)
    if not spec.functions:
        _describe_tensors(mlmodel, spec)
    mlmodel.short_description = f"{spec.description} ({precision} weights)"
    mlmodel.author = AUTHOR.format(source=source + (f" + LoRA {adapter}" if adapter else ""))
    mlmodel.license = LICENSE
    mlmodel.version = version
    meta = mlmodel.user_defined_metadata
    meta["voxcpm.component"], meta["voxcpm.precision"], meta["voxcpm.layout"] = spec.name, precision, layout
    if spec.notes:
        meta["voxcpm.notes"] = spec.notes
    for key, value in (options or {}).items():
        meta[key] = value
    if adapter:
        meta["voxcpm.lora"] = adapter


def _describe_tensors(mlmodel, spec: ComponentSpec) -> None:
    for tensor in spec.inputs:
        mlmodel.input_description[tensor.name] = tensor.description
    for tensor in spec.outputs:
        mlmodel.output_description[tensor.name] = tensor.description
    states = {t.name: t.description for t in spec.states}
    for feature in mlmodel._spec.description.state:   # coremltools has no state_description: the spec it saves
        feature.shortDescription = states.get(feature.name, feature.shortDescription)


def save(mlmodel, final: Path) -> Path:
    return write_atomically(final, lambda tmp: mlmodel.save(str(tmp)))


def compile_beside(package: Path) -> str:
    """Compile beside the package where Core ML exists; elsewhere say why not."""
    if sys.platform != "darwin":
        return COMPILE_SKIPPED
    from coremltools.models.utils import compile_model

    final = package.with_suffix(".mlmodelc")
    write_atomically(final, lambda tmp: compile_model(str(package), str(tmp)))
    return final.name
