"""Structural checks on a package's MIL program: defects the numeric gates may not see.

- Only linear / conv / conv_transpose *weights* may be quantized: a global
  `linear_quantize_weights` config also quantizes RoPE tables (a gather's input), norm weights,
  and so on, and on random weights the error can stay inside the numeric gates (TRIALS.md).
- An LM step's cache outputs must depend on its `position` and `embed` inputs: a trace that
  baked the example position, or dropped the cache write, gives outputs that do not.
- A cache output must not be a plain passthrough (identity chain) of a cache input: what
  torch.jit.trace leaves of an in-place write into a view.
- A stream step must carry: its audio depends on every context it is handed (input or state),
  and every context it hands on (output, or state update) depends on the latent and is not a
  passthrough of what it was handed.
"""
from __future__ import annotations

from pathlib import Path

WEIGHT_CONSUMERS = {"linear": "weight", "conv": "weight", "conv_transpose": "weight"}
PASSTHROUGH_OPS = {"identity", "cast"}


def load_function(package: Path, name: str | None = None):
    from runtime.mil.loader import pick_function, read_program

    return pick_function(read_program(package), name)[1]


def _vars(value):
    return value if isinstance(value, (list, tuple)) else [value]


def quantized_non_weights(function) -> list[str]:
    """Compressed constants (constexpr_*) that feed anything but a linear/conv weight."""
    bad = []
    for op in function.operations:
        if not op.op_type.startswith("constexpr_"):
            continue
        for var in op.outputs:
            for child in var.child_ops:
                param = WEIGHT_CONSUMERS.get(child.op_type)
                if param is None or child.inputs.get(param) is not var:
                    bad.append(f"{op.name} ({op.op_type}) feeds {child.op_type} {child.name}")
    return bad


def input_dependencies(function) -> dict[str, frozenset]:
    """var name -> the function inputs it depends on (one forward pass in op order)."""
    deps = {name: frozenset([name]) for name in function.inputs}
    for op in function.operations:
        found = frozenset()
        for value in op.inputs.values():
            for var in _vars(value):
                found |= deps.get(var.name, frozenset())
        for block in op.blocks:  # control flow: whatever its body reads
            for inner in block.operations:
                for value in inner.inputs.values():
                    for var in _vars(value):
                        found |= deps.get(var.name, frozenset())
        for var in op.outputs:
            deps[var.name] = found
    return deps


def passthrough_source(var, input_names) -> str | None:
    """The input a var merely copies (through identity/cast), else None."""
    while True:
        if var.name in input_names:
            return var.name
        op = var.op
        if op is None or op.op_type not in PASSTHROUGH_OPS:
            return None
        var = op.inputs["x"]


def quantized_weights(function) -> int:
    return sum(1 for op in function.operations if op.op_type.startswith("constexpr_")
               for var in op.outputs for child in var.child_ops
               if child.inputs.get(WEIGHT_CONSUMERS.get(child.op_type, "")) is var)


def check_package(spec, package: Path, precision: str) -> list[dict]:
    """[{check, passed, detail}] for the package of component `spec` (its declaration)."""
    function = load_function(package)
    bad = quantized_non_weights(function)
    results = [{"check": "only linear/conv weights are quantized", "passed": not bad,
                "detail": "; ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")}]
    if precision == "int8":
        count = quantized_weights(function)
        results.append({"check": "int8 package has quantized weights", "passed": count > 0,
                        "detail": f"{count} linear/conv weights quantized"})
    if spec.caches is not None:
        results += _cache_checks(function, spec)
    if spec.carried is not None:
        results += _carried_checks(function, spec)
    return results


def _summary(items: list[str]) -> str:
    return "; ".join(items[:4]) + (f" and {len(items) - 4} more" if len(items) > 4 else "")


def _state_updates(function) -> dict:
    """state name -> the value var its (last) coreml_update_state writes."""
    return {op.inputs["state"].name: op.inputs["value"] for op in function.operations
            if op.op_type == "coreml_update_state"}


def _carried_checks(function, spec) -> list[dict]:
    deps = input_dependencies(function)
    latent, names = spec.inputs[0].name, spec.carried.names()
    audio = next((v for v in function.outputs if v.name == spec.primary_output), None)
    unread = [n for n in names if audio is None or n not in deps.get(audio.name, frozenset())]
    if spec.carried.stateful:
        written = _state_updates(function)
        handed_on = {n: written.get(n) for n in names}
    else:
        outputs = {v.name: v for v in function.outputs}
        handed_on = {n: outputs.get(spec.carried.output_for(n)) for n in names}
    missing = [n for n, var in handed_on.items() if var is None]
    blind = [n for n, var in handed_on.items() if var is not None and latent not in deps.get(var.name, frozenset())]
    passthrough = [n for n, var in handed_on.items() if var is not None and passthrough_source(var, set(function.inputs))]
    how = "state update" if spec.carried.stateful else "output"
    return [
        {"check": "audio depends on every carried context", "passed": not unread,
         "detail": _summary([f"{n} is never read" for n in unread])},
        {"check": f"every context is handed on ({how}) and depends on the latent", "passed": not (missing or blind),
         "detail": _summary([f"{n} has no {how}" for n in missing] + [f"{n} ignores {latent}" for n in blind])},
        {"check": "no carried context is a passthrough of its input", "passed": not passthrough,
         "detail": _summary(passthrough)},
    ]


def _cache_checks(function, spec) -> list[dict]:
    deps = input_dependencies(function)
    inputs = set(function.inputs)
    wanted = set(spec.caches.output_names())
    cache_outputs = [v for v in function.outputs if v.name in wanted]
    blind, passthrough = [], []
    for var in cache_outputs:
        missing = {spec.position_input, spec.embed_input} - deps.get(var.name, frozenset())
        if missing:
            blind.append(f"{var.name} ignores {', '.join(sorted(missing))}")
        source = passthrough_source(var, inputs)
        if source is not None:
            passthrough.append(f"{var.name} = {source}")
    return [
        {"check": "cache outputs depend on position and embed", "passed": bool(cache_outputs) and not blind,
         "detail": "; ".join(blind[:4]) + (f" and {len(blind) - 4} more" if len(blind) > 4 else "")
         if cache_outputs else f"none of the declared cache outputs ({spec.caches.output_names()[0]}, ...)"},
        {"check": "no cache output is a passthrough of its input", "passed": not passthrough,
         "detail": "; ".join(passthrough[:4]) + (f" and {len(passthrough) - 4} more" if len(passthrough) > 4 else "")},
    ]
