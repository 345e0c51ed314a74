"""Name the first op where a converted package departs from torch.

The package is replayed in the MIL interpreter on the inputs of its worst comparison, twice:
as Core ML would run it (fp16 rounding) and in the interpreter's fp32 mode (same program, no
rounding: what is left is a conversion error). The torch side is the *patched* module that was
converted, run in FP32 with forward hooks on every Linear / Conv1d / ConvTranspose1d. MIL
linear / conv / conv_transpose ops are paired with those calls in order, per op type (a
jit.trace conversion keeps torch's call order), and each pair is compared. The first pair whose
output error passes the threshold is named, with the last pair that still agreed: the defect
is between them (in the op itself when its input still agrees).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from runtime.metrics import compare

MIL_TYPE = {nn.Linear: "linear", nn.Conv1d: "conv", nn.ConvTranspose1d: "conv_transpose"}


def _mil_type(module) -> str | None:
    for cls, name in MIL_TYPE.items():
        if isinstance(module, cls):
            return name
    return None


def torch_calls(module: nn.Module, args: tuple) -> list[dict]:
    """Every Linear/Conv call of `module(*args)` in order: {type, module, input, output}."""
    calls, handles = [], []
    for name, sub in module.named_modules():
        kind = _mil_type(sub)
        if kind is None:
            continue

        def hook(mod, inputs, output, name=name, kind=kind):
            calls.append({"type": kind, "module": name, "input": inputs[0].detach().numpy().copy(),
                          "output": output.detach().numpy().copy()})
        handles.append(sub.register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(*args)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def mil_ops(function) -> list[dict]:
    """The MIL linear/conv/conv_transpose ops in program order: {type, output, input, position}."""
    ops = []
    for position, op in enumerate(function.operations):
        if op.op_type in MIL_TYPE.values():
            ops.append({"type": op.op_type, "output": op.outputs[0].name, "input": op.inputs["x"].name,
                        "position": position})
    return ops


def _align(actual, expected):
    """Both arrays squeezed; conv outputs that differ only in their last axis are cropped alike
    (voxcpm's causal convs pad/crop outside the nn.Conv1d call the hook sees)."""
    a, e = np.squeeze(np.asarray(actual, np.float64)), np.squeeze(np.asarray(expected, np.float64))
    if a.shape == e.shape:
        return a, e
    if a.ndim == e.ndim and a.shape[:-1] == e.shape[:-1]:
        n = min(a.shape[-1], e.shape[-1])
        return a[..., :n], e[..., :n]
    return None


def _error(values: dict, name: str, expected) -> dict | None:
    if name not in values:
        return None
    pair = _align(values[name], expected)
    return compare(*pair) if pair is not None else None


def pair_ops(mil: list[dict], calls: list[dict]) -> list[tuple[dict, dict]]:
    """k-th MIL op of a type with the k-th torch call of that type."""
    by_type: dict = {}
    for call in calls:
        by_type.setdefault(call["type"], []).append(call)
    seen: dict = {}
    pairs = []
    for op in mil:
        k = seen.get(op["type"], 0)
        seen[op["type"]] = k + 1
        if k < len(by_type.get(op["type"], [])):
            pairs.append((op, by_type[op["type"]][k]))
    return pairs


def _diverges(metrics: dict | None, threshold: float, min_corr: float) -> bool:
    return metrics is not None and (not metrics["finite"] or metrics["rel_l2"] > threshold or metrics["corr"] < min_corr)


def localize(package, torch_module: nn.Module, torch_args: tuple, inputs: dict, threshold: float,
             min_corr: float) -> dict:
    """The first diverging op of `package` on `inputs` (numpy, the package's input names)."""
    import runtime

    from .structural import load_function

    calls = torch_calls(torch_module, torch_args)
    function = load_function(package)
    ops = mil_ops(function)
    del function  # the program holds every weight; only op names are needed from here on
    pairs = pair_ops(ops, calls)
    runs = {}
    wanted = {name for op, _ in pairs for name in (op["output"], op["input"])}  # not every activation
    for mode in ("fp16", "fp32"):
        model = runtime.load(package, backend="mil", compute=mode)
        _, trace = model.predict(inputs, return_intermediates=wanted)
        runs[mode] = {**{k: np.asarray(v) for k, v in inputs.items()}, **trace}
        del model
    result = {"matched_ops": len(pairs), "mil_ops": len(ops), "torch_calls": len(calls), "threshold": threshold,
              "first_divergent": None, "first_divergent_fp32": None, "last_agreeing": None}
    for op, call in pairs:
        out16 = _error(runs["fp16"], op["output"], call["output"])
        entry = {"op_type": op["type"], "output": op["output"], "position": op["position"],
                 "torch_module": call["module"], "rel_l2": out16 and out16["rel_l2"], "corr": out16 and out16["corr"]}
        if _diverges(out16, threshold, min_corr):
            if result["first_divergent"] is None:
                in16 = _error(runs["fp16"], op["input"], call["input"])
                entry["input_rel_l2"] = in16 and in16["rel_l2"]
                entry["input_agrees"] = in16 is not None and not _diverges(in16, threshold, min_corr)
                result["first_divergent"] = entry
        elif result["first_divergent"] is None and out16 is not None:
            result["last_agreeing"] = entry
        out32 = _error(runs["fp32"], op["output"], call["output"])
        if result["first_divergent_fp32"] is None and _diverges(out32, threshold, min_corr):
            result["first_divergent_fp32"] = {**entry, "rel_l2": out32["rel_l2"], "corr": out32["corr"]}
        if result["first_divergent"] is not None and result["first_divergent_fp32"] is not None:
            break
    result["summary"] = describe(result)
    return result


def describe(result: dict) -> str:
    first = result["first_divergent"]
    if first is None:
        return (f"no op departs from torch by more than rel-L2 {result['threshold']:.3g} "
                f"({result['matched_ops']} linear/conv ops matched)")
    where = f"{first['op_type']} {first['output']!r} (op #{first['position']}, torch {first['torch_module']})"
    text = f"first divergent op: {where}, rel-L2 {first['rel_l2']:.3g}"
    if first.get("input_agrees"):
        text += "; its input still agrees, so the op itself (its weight) is wrong"
    elif result["last_agreeing"] is not None:
        last = result["last_agreeing"]
        text += f"; its input already differs: the defect lies after {last['op_type']} {last['output']!r} (op #{last['position']})"
    fp32 = result["first_divergent_fp32"]
    text += ("; the fp32 run diverges too (the program itself, not fp16 rounding: a conversion error, or the "
             "cost of int8 weights; python -m validate.int8_floor tells them apart)" if fp32 is not None
             else "; the fp32 run of the same program does not (fp16 rounding)")
    return text


def torch_args(spec, arrays: dict) -> tuple:
    """The package's inputs as torch tensors, in declaration order, as the converted model sees
    them (validate.cases.as_declared)."""
    from .cases import as_declared

    declared = as_declared(arrays, spec)
    return tuple(torch.from_numpy(np.ascontiguousarray(declared[t.name])) for t in spec.inputs)


def localize_component(patched_model, spec, package, arrays: dict, gate) -> dict:
    """Localise `package` (component `spec`) on `arrays` against the patched torch module it was converted from."""
    from patches.modules import build

    module = build(spec, patched_model)
    result = localize(package, module, torch_args(spec, arrays), arrays, gate.rel_l2, gate.corr)
    position = arrays.get(spec.position_input) if spec.position_input else None
    if position is not None:
        result["position"] = int(np.asarray(position).reshape(-1)[0])
    return result
