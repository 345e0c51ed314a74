"""The declaration an OUT folder's packages are held to, also for folders this toolkit did not write.

With OUT/manifest.json: the checkpoint config and context the converter recorded. Without one (the
published artifacts, say): the checkpoint's own config.json (--model), the context from
OUT/constants/config.json or else from the LM step packages' cache shapes, and a note of what
cannot be known (provenance). A layout other than the published one records its options (context,
chunk, ...) in its packages' metadata: they are read from there. `python -m convert.check_specs` and
`python -m validate` both use it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from contract import artifacts
from contract.defaults import DEFAULT_LAYOUT, MAX_CONTEXT, PRECISIONS
from contract.layout import Layout, component_names, declare, options_from_metadata


class DeclarationError(Exception):
    """What is needed to know the interface is missing; one line naming the fix."""


@dataclass
class Declared:
    layout: Layout                      # the fp16 declaration; `layout.for_precision` gives fp32's
    source: str                         # where the interface came from
    unknown: list[str] = field(default_factory=list)   # what could not be known without a manifest


def package_context(out, layout: Layout) -> int | None:
    """The context an LM step package holds (the position axis of its first cache input), or None."""
    from runtime.package_info import read

    for spec in layout.components:
        if spec.caches is None:
            continue
        for precision in PRECISIONS:
            path = artifacts.package_path(out, precision, spec.name, layout.name)
            if artifacts.is_package(path):
                first = spec.caches.input_names()[0]
                shapes = {d.name: d.shape for d in read(path).inputs}
                if first in shapes:
                    return int(shapes[first][2])
    return None


def _context(out, config: dict, layout_name: str) -> tuple[int, str]:
    """The converted context and where it was read: the generation config, else the LM step packages."""
    if artifacts.has_generation_config(out):
        return artifacts.max_context(artifacts.read_generation_config(out)), "constants/config.json"
    context = package_context(out, declare(config, layout_name))
    if context is not None:
        return context, "the LM step packages' cache shapes"
    return MAX_CONTEXT, f"the default ({MAX_CONTEXT}): OUT has no generation config and no LM step package"


def package_options(out, layout_name: str) -> dict | None:
    """The layout options the first of its packages found in OUT records ({} if it records none, None if
    OUT has no package of the layout)."""
    from runtime.package_info import read

    for precision in PRECISIONS:
        for component in component_names(layout_name):
            path = artifacts.package_path(out, precision, component, layout_name)
            if artifacts.is_package(path):
                return options_from_metadata(read(path).metadata)
    return None


def declared_for(out, model: str | None = None, revision: str | None = None,
                 layout_name: str = DEFAULT_LAYOUT, prefer_model: bool = False) -> Declared:
    """The declaration OUT's packages are held to: the checkpoint config its manifest recorded, else
    (or, with `prefer_model`, first) the one `model` gives; the context from the generation config,
    else from the packages."""
    manifest = artifacts.read_manifest(out)
    unknown = [] if manifest is not None else [
        "no manifest.json: provenance (which weights, which toolkit and settings) cannot be checked"]
    if manifest is not None and not (prefer_model and model is not None):
        config, where = manifest["source"]["config"], "OUT/manifest.json"
    elif model is None:
        raise DeclarationError(f"{out} has no manifest.json (a conversion this toolkit did not make): give the "
                               f"checkpoint it was converted from with --model so that its interface can be declared")
    else:
        from checkpoint.loading import config_dict

        config, where = config_dict(model, revision), f"{model}/config.json"
    if layout_name != DEFAULT_LAYOUT:   # a layout with options records them in its packages
        options = package_options(out, layout_name)
        if options is None:
            raise DeclarationError(f"{out} has no {layout_name} packages: convert them "
                                   f"(python -m convert --layout {layout_name} --out {out})")
        if options:
            layout = declare(config, layout_name, **options)
            return Declared(layout, f"{where}, options {options} from the packages' metadata", unknown)
    context, context_from = _context(out, config, layout_name)
    return Declared(declare(config, layout_name, context), f"{where}, context {context} from {context_from}", unknown)
