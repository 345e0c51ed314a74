"""What a converted component is, as data: its tensors, kind, caches and what conversion and validation need.

One `ComponentSpec` per component and layout, built by a layout module (`contract/published.py`);
convert, validate, generate and the tests read it, and nothing else spells a component's names.
Torch-free: the torch module and the validation reference are named here and resolved by the
packages that own them (`patches.modules`, `validate.references`, `validate.cases`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

STATELESS, LM_STEP, STREAM_STEP = "stateless", "lm_step", "stream_step"
KINDS = (STATELESS, LM_STEP, STREAM_STEP)
CACHE_KINDS = ("k", "v")


@dataclass(frozen=True)
class TensorSpec:
    """One model input, output or state. `shape` holds the default size of a flexible axis;
    `flexible` maps axis -> (lo, hi) inclusive, or is None for a fixed shape."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "fp16"            # "fp16" or "int32" ("fp32" in the reference build)
    flexible: dict[int, tuple[int, int]] | None = None
    description: str = ""          # one line for a developer who opens the package in Xcode

    def as_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["flexible"] = {str(k): list(v) for k, v in self.flexible.items()} if self.flexible else None
        return d


@dataclass(frozen=True)
class CacheSpec:
    """The KV caches of an LM step: `layers` keys and values of `shape`, passed in and out as tensors.

    Inputs are `{kind}{i}` (k0.., v0..), outputs `out_{kind}{i}`: the published interface's names.
    """

    layers: int
    shape: tuple[int, ...]         # [1, kv_heads, context, head_dim]
    dtype: str = "fp16"
    input_prefix: str = ""
    output_prefix: str = "out_"

    @property
    def context(self) -> int:
        return self.shape[2]

    def input_name(self, kind: str, layer: int) -> str:
        return f"{self.input_prefix}{kind}{layer}"

    def output_name(self, kind: str, layer: int) -> str:
        return f"{self.output_prefix}{kind}{layer}"

    def slots(self) -> list[tuple[str, int]]:
        """(kind, layer) of every cache, keys of all layers first: the published order."""
        return [(kind, i) for kind in CACHE_KINDS for i in range(self.layers)]

    def input_names(self) -> list[str]:
        return [self.input_name(k, i) for k, i in self.slots()]

    def output_names(self) -> list[str]:
        return [self.output_name(k, i) for k, i in self.slots()]

    def output_for(self, input_name: str) -> str:
        """The output that carries `input_name`'s cache after the step."""
        return self.output_prefix + input_name[len(self.input_prefix):]

    def tensors(self, side: str) -> list[TensorSpec]:
        names = self.input_names() if side == "input" else self.output_names()
        verb = "before" if side == "input" else "after"
        return [TensorSpec(name, self.shape, self.dtype,
                           description=f"{'key' if kind == 'k' else 'value'} cache of layer {i} {verb} this step, "
                                       f"[1, kv_heads, context, head_dim]; slots past the position are zero")
                for name, (kind, i) in zip(names, self.slots())]


@dataclass(frozen=True)
class CarriedSpec:
    """What a stream step carries from one call to the next (the streaming decoder: every causal
    convolution's left context), as model inputs `{name}` and outputs `out_{name}` (macOS 14), or
    as Core ML states `{name}` kept inside the model between calls (`stateful`, macOS 15).
    Zeros start a fresh stream."""

    tensors: tuple[TensorSpec, ...]     # under their input (or state) names
    stateful: bool = False
    output_prefix: str = "out_"

    def names(self) -> list[str]:
        return [t.name for t in self.tensors]

    def output_for(self, name: str) -> str:
        """The output that carries input `name` to the next call (explicit form)."""
        return self.output_prefix + name

    def output_names(self) -> list[str]:
        return [self.output_for(n) for n in self.names()]

    def elements(self) -> int:
        """Values carried per call, all tensors together."""
        return sum(math.prod(t.shape) for t in self.tensors)


@dataclass(frozen=True)
class ComponentSpec:
    """One converted component of a layout: everything convert, validate and generate need to know."""

    name: str
    kind: str                                  # "stateless", "lm_step" or "stream_step"
    description: str                           # the package's short description
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    primary_output: str                        # the output a stateless check compares
    torch_module: str                          # class in patches.modules whose forward is this component
    parts: tuple[str, ...]                     # the VoxCPMModel parts it reads (dotted paths; an LM step's first
                                               # is its LM)
    caches: CacheSpec | None = None            # LM steps: caches in and out
    carried: CarriedSpec | None = None         # stream steps: what one call hands the next (I/O or states)
    embed_input: str | None = None             # LM steps: the embedding of the position
    position_input: str | None = None          # LM steps: the int32 position input
    fp32_inputs: frozenset = frozenset()       # ops computed only from these inputs stay fp32 (see convert)
    reference: str = ""                        # validate.references.TorchReference method (stateless)
    cases: str = ""                            # validate.cases builder of its inputs (stateless; default:
                                               # random inputs at the declared shapes)
    notes: str = ""
    deployment_target: str = "macOS14"         # Core ML states need macOS15

    @property
    def states(self) -> tuple[TensorSpec, ...]:
        """The Core ML states of the package (empty unless it carries them as states)."""
        return self.carried.tensors if self.carried is not None and self.carried.stateful else ()

    def input(self, name: str) -> TensorSpec:
        return next(t for t in self.inputs if t.name == name)

    def output(self, name: str) -> TensorSpec:
        return next(t for t in self.outputs if t.name == name)

    def has_output(self, name: str) -> bool:
        return any(t.name == name for t in self.outputs)

    def head_outputs(self) -> list[str]:
        """The outputs that are not caches."""
        caches = set(self.caches.output_names()) if self.caches else set()
        return [t.name for t in self.outputs if t.name not in caches]

    def with_float_dtype(self, dtype: str) -> "ComponentSpec":
        """The same component with every fp16 tensor declared `dtype` (the FP32 reference build)."""
        retype = lambda specs: tuple(replace(t, dtype=dtype) if t.dtype == "fp16" else t for t in specs)  # noqa: E731
        caches = replace(self.caches, dtype=dtype) if self.caches and self.caches.dtype == "fp16" else self.caches
        # Core ML states can only be fp16 ("State only support fp16 dtype", coremltools 9): they stay fp16
        stays = self.carried is None or self.carried.stateful
        carried = self.carried if stays else replace(self.carried, tensors=retype(self.carried.tensors))
        return replace(self, inputs=retype(self.inputs), outputs=retype(self.outputs), caches=caches,
                       carried=carried)

    def as_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "description": self.description,
                "inputs": [t.as_dict() for t in self.inputs], "outputs": [t.as_dict() for t in self.outputs],
                **({"states": [t.as_dict() for t in self.states]} if self.states else {}),
                "deployment_target": self.deployment_target, "notes": self.notes}
