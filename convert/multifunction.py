"""A multifunction package: each declared function converted on its own, merged with their weights shared.

`Functions` holds one converted ML Program per function of a component (`ComponentSpec.functions`)
and saves them the way coremltools merges packages (`ct.utils.MultiFunctionDescriptor` +
`save_multifunction`, which deduplicates identical constants across functions: the fast layout's
`prefill` and `step` read the same weights once). The merged package gets the package-level
description and metadata afterwards (the merge keeps each function's tensor descriptions, not the
package's), written into its spec file in place.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


class Functions:
    """The converted functions of one component, saved as one package (`save`). Carries the package
    metadata that `convert.packaging.describe` sets, like an MLModel."""

    def __init__(self, spec, models: dict):
        self.spec, self.models = spec, models
        self.short_description = self.author = self.license = self.version = ""
        self.user_defined_metadata: dict[str, str] = {}

    def map(self, transform) -> "Functions":
        """The same functions, each ML Program passed through `transform` (int8 quantization)."""
        return Functions(self.spec, {name: transform(model) for name, model in self.models.items()})

    def save(self, path) -> None:
        import coremltools as ct

        path = Path(path)
        work = path.parent / f".{path.stem}.functions-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            descriptor = ct.utils.MultiFunctionDescriptor()
            for function in self.spec.functions:
                source = work / f"{function.name}.mlpackage"
                self.models[function.name].save(str(source))
                descriptor.add_function(str(source), src_function_name="main", target_function_name=function.name)
            descriptor.default_function_name = self.spec.functions[0].name
            ct.utils.save_multifunction(descriptor, str(path))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        edit_spec(path, self._write_metadata)

    def _write_metadata(self, spec) -> None:
        meta = spec.description.metadata
        meta.shortDescription, meta.author, meta.license = self.short_description, self.author, self.license
        meta.versionString = self.version
        for key, value in self.user_defined_metadata.items():
            meta.userDefined[key] = value


def spec_path(package) -> Path:
    """The model spec file inside a .mlpackage (its Manifest.json names it)."""
    manifest = json.loads((Path(package) / "Manifest.json").read_text(encoding="utf-8"))
    root = manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]
    return Path(package) / "Data" / root["path"]


def edit_spec(package, edit) -> None:
    """Load the package's spec, `edit(spec)` it, write it back in place (the weights are untouched)."""
    from coremltools.proto import Model_pb2

    path = spec_path(package)
    spec = Model_pb2.Model()
    spec.ParseFromString(path.read_bytes())
    edit(spec)
    path.write_bytes(spec.SerializeToString())
