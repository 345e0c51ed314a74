"""Compare converted packages with the declared interface: `python -m convert.check_specs OUT`.

Reads each package's spec (works on Linux: `skip_model_load=True`) and checks names, order,
shapes, dtypes, flexible ranges, model type (mlprogram) and spec version (macOS14 = 8).
Prints a table and exits 1 if anything differs.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .interface import COMPONENTS, ComponentInterface, TensorSpec, interfaces

MACOS14_SPEC_VERSION = 8
PRECISIONS = ("fp16", "int8", "fp32")
FLOAT_DTYPE = {"fp16": "fp16", "int8": "fp16", "fp32": "fp32"}  # the declaration each is held to
_DTYPES = {65552: "fp16", 65568: "fp32", 65600: "fp64", 131104: "int32"}


def _feature(feature) -> dict:
    array = feature.type.multiArrayType
    entry = {"name": feature.name, "shape": [int(d) for d in array.shape],
             "dtype": _DTYPES.get(array.dataType, str(array.dataType)), "flexible": None}
    ranges = array.shapeRange.sizeRanges
    if len(ranges):
        flexible = {axis: [int(r.lowerBound), int(r.upperBound)] for axis, r in enumerate(ranges)
                    if r.lowerBound != r.upperBound}
        entry["flexible"] = {str(k): v for k, v in flexible.items()} or None
    return entry


def spec_interface(package) -> dict:
    """The interface a saved package declares: type, spec version, inputs and outputs."""
    import coremltools as ct

    spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()
    return {"model_type": spec.WhichOneof("Type"), "spec_version": int(spec.specificationVersion),
            "inputs": [_feature(f) for f in spec.description.input],
            "outputs": [_feature(f) for f in spec.description.output]}


def _compare_tensors(kind: str, declared: tuple[TensorSpec, ...], actual: list[dict], check_shapes: bool) -> list[str]:
    problems = []
    if [t.name for t in declared] != [a["name"] for a in actual]:
        return [f"{kind} names/order {[a['name'] for a in actual]} != declared {[t.name for t in declared]}"]
    for spec, got in zip(declared, actual):
        if got["dtype"] != spec.dtype:
            problems.append(f"{kind} {spec.name} dtype {got['dtype']} != {spec.dtype}")
        if not check_shapes:
            continue
        if spec.flexible:
            want = {str(k): list(v) for k, v in spec.flexible.items()}
            if got["flexible"] != want:
                problems.append(f"{kind} {spec.name} flexible {got['flexible']} != {want}")
            fixed = [d for i, d in enumerate(spec.shape) if i not in spec.flexible]
            got_fixed = [d for i, d in enumerate(got["shape"]) if i not in spec.flexible]
            if got_fixed != fixed or len(got["shape"]) != len(spec.shape):
                problems.append(f"{kind} {spec.name} shape {got['shape']} != {list(spec.shape)}")
        elif got["shape"] != list(spec.shape) or got["flexible"]:
            problems.append(f"{kind} {spec.name} shape {got['shape']} (flexible {got['flexible']}) != {list(spec.shape)}")
    return problems


def compare(actual: dict, iface: ComponentInterface) -> list[str]:
    """Every difference between a package's spec interface and the declaration (empty: match)."""
    problems = []
    if actual["model_type"] != "mlProgram":
        problems.append(f"model type {actual['model_type']} is not mlProgram")
    if actual["spec_version"] != MACOS14_SPEC_VERSION:
        problems.append(f"spec version {actual['spec_version']} != {MACOS14_SPEC_VERSION} (macOS14)")
    problems += _compare_tensors("input", iface.inputs, actual["inputs"], check_shapes=True)
    # a flexible-shaped output may declare no shape in the spec; names and dtypes must still match
    outputs_flexible = any(t.flexible for t in iface.outputs)
    problems += _compare_tensors("output", iface.outputs, actual["outputs"], check_shapes=not outputs_flexible)
    return problems


def check_out(out: Path) -> list[dict]:
    """One row per package found in OUT: component, precision, problems."""
    out = Path(out)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    rows = []
    for precision in PRECISIONS:
        declared = interfaces(manifest["source"]["config"], manifest["settings"]["max_context"], FLOAT_DTYPE[precision])
        for name in COMPONENTS:
            package = out / precision / f"{name}.mlpackage"
            if package.exists():
                rows.append({"component": name, "precision": precision,
                             "problems": compare(spec_interface(package), declared[name])})
    return rows


def _summary(iface: ComponentInterface) -> str:
    def fmt(t: TensorSpec):
        shape = [f"{t.flexible[i][0]}..{t.flexible[i][1]}" if t.flexible and i in t.flexible else str(d)
                 for i, d in enumerate(t.shape)]
        return f"{t.name}[{','.join(shape)}]{'' if t.dtype == 'fp16' else ':' + t.dtype}"

    ins = [fmt(t) for t in iface.inputs]
    outs = [fmt(t) for t in iface.outputs]
    short = lambda items: ", ".join(items if len(items) <= 5 else items[:3] + [f"... ({len(items)} in all)"])
    return f"{short(ins)} -> {short(outs)}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convert.check_specs", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default="build/voxcpm-1.5-coreml", help="a converted OUT directory")
    args = parser.parse_args(argv)
    try:
        rows = check_out(Path(args.out))
    except (OSError, KeyError, ValueError) as exc:
        print(f"error: cannot read {args.out}/manifest.json ({exc}): convert first with python -m convert",
              file=sys.stderr)
        return 2
    manifest = json.loads((Path(args.out) / "manifest.json").read_text())
    declared = {p: interfaces(manifest["source"]["config"], manifest["settings"]["max_context"], FLOAT_DTYPE[p])
                for p in PRECISIONS}
    print(f"{'component':<18} {'precision':<9} {'spec':<6} interface")
    for row in rows:
        status = "OK" if not row["problems"] else "DIFF"
        print(f"{row['component']:<18} {row['precision']:<9} {status:<6} {_summary(declared[row['precision']][row['component']])}")
        for problem in row["problems"]:
            print(f"    - {problem}")
    bad = sum(bool(r["problems"]) for r in rows)
    print(f"{len(rows)} packages checked, {bad} differ from the declared interface")
    return 1 if bad or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
