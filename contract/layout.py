"""A layout: a named set of component declarations that together run VoxCPM 1.5 (the published one today).

A new layout is one new module beside `contract/published.py` with `NAME`, `COMPONENTS` and
`declare(config, max_context, float_dtype) -> Layout`, listed in `LAYOUTS`: conversion, the spec
check and validation then follow the declaration; the generator needs one steps implementation.
A layout may also declare OPTIONAL components: converted only on request (`--components`), checked
and validated where converted, used by the generator where present.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, replace

from .components import ComponentSpec

LAYOUTS = ("published",)
FLOAT_DTYPES = ("fp16", "fp32")    # fp16: the shipped interface; fp32: the reference build
MACOS14_SPEC_VERSION = 8
SPEC_VERSIONS = {"macOS14": MACOS14_SPEC_VERSION, "macOS15": 9}   # Core ML spec version of each deployment target


@dataclass(frozen=True)
class Layout:
    name: str
    description: str
    components: tuple[ComponentSpec, ...]   # in conversion order
    max_context: int
    deployment_target: str = "macOS14"
    spec_version: int = MACOS14_SPEC_VERSION
    optional: tuple[str, ...] = ()          # components converted only on request (the rest by default)

    def __getitem__(self, component: str) -> ComponentSpec:
        for spec in self.components:
            if spec.name == component:
                return spec
        raise KeyError(f"layout {self.name!r} has no component {component!r}; it has {', '.join(self.names)}")

    def __contains__(self, component: str) -> bool:
        return component in self.names

    def __iter__(self):
        return iter(self.components)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.components)

    @property
    def required(self) -> tuple[str, ...]:
        """The components every conversion builds and every generator needs."""
        return tuple(name for name in self.names if name not in self.optional)

    def of_kind(self, kind: str) -> tuple[ComponentSpec, ...]:
        return tuple(spec for spec in self.components if spec.kind == kind)

    def with_float_dtype(self, dtype: str) -> "Layout":
        if dtype not in FLOAT_DTYPES:
            raise ValueError(f"unknown float dtype {dtype!r}: use fp16 or fp32")
        if dtype == "fp16":
            return self
        return replace(self, components=tuple(c.with_float_dtype(dtype) for c in self.components))

    def for_precision(self, precision: str) -> "Layout":
        """The declaration packages of `precision` are held to: fp32 floats for the reference build."""
        return self.with_float_dtype("fp32" if precision == "fp32" else "fp16")


def _module(name: str):
    if name not in LAYOUTS:
        raise ValueError(f"unknown layout {name!r}: use {', '.join(LAYOUTS)}")
    return importlib.import_module(f"{__package__}.{name}")


def component_names(name: str = "published") -> tuple[str, ...]:
    """The components of layout `name` a conversion builds by default, in conversion order (no config needed)."""
    return tuple(_module(name).COMPONENTS)


def optional_names(name: str = "published") -> tuple[str, ...]:
    """The components of layout `name` converted only on request."""
    return tuple(getattr(_module(name), "OPTIONAL", ()))


def all_names(name: str = "published") -> tuple[str, ...]:
    return component_names(name) + optional_names(name)


def spec_version_of(spec) -> int:
    """The Core ML spec version a component's package has (its deployment target's)."""
    return SPEC_VERSIONS[spec.deployment_target]


def declare(config, name: str = "published", max_context: int | None = None,
            float_dtype: str = "fp16") -> Layout:
    """Layout `name` for the checkpoint whose config.json is `config` (a dict), or for a `ModelSizes`
    (`contract.sizes.sizes_from_generation_config` gives those of a converted OUT)."""
    module = _module(name)
    kwargs = {} if max_context is None else {"max_context": max_context}
    return module.declare(config, float_dtype=float_dtype, **kwargs)
