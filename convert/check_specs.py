"""Compare converted packages with the declared interface: `python -m convert.check_specs OUT [--model M]`.

Reads each package's spec (works on Linux) and checks, by name, every input and output: present,
dtype, shape and flexible range; and the model type (mlprogram) and spec version. Core ML binds
inputs and outputs by name, so a different order is reported, never judged. Works on folders this
toolkit did not make: without OUT/manifest.json the interface is declared from the checkpoint's
config.json (--model) and the context from the packages themselves. Exits 1 if anything differs.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from contract import artifacts, cli
from contract.components import ComponentSpec, TensorSpec
from contract.defaults import DEFAULT_LAYOUT, DEFAULT_OUT, PRECISIONS
from contract.layout import MACOS14_SPEC_VERSION, all_names, spec_version_of

from .declared import DeclarationError, declared_for

__all__ = ["MACOS14_SPEC_VERSION", "check_out", "compare", "spec_interface", "declared_for"]


class SpecCheckError(Exception):
    """OUT cannot be checked; one line naming the fix."""


def spec_interface(package) -> dict:
    """The interface a saved package declares: type, spec version, inputs and outputs."""
    from runtime.package_info import interface

    return interface(package)


def _compare_tensor(kind: str, spec: TensorSpec, got: dict, check_shapes: bool) -> list[str]:
    problems = []
    if got["dtype"] != spec.dtype:
        problems.append(f"{kind} {spec.name} dtype {got['dtype']} != {spec.dtype}")
    if not check_shapes:
        return problems
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


def _compare_tensors(kind: str, declared: tuple[TensorSpec, ...], actual: list[dict], check_shapes: bool,
                     notes: list[str]) -> list[str]:
    """Problems by name; a different order goes to `notes` (Core ML binds by name)."""
    by_name = {a["name"]: a for a in actual}
    want = [t.name for t in declared]
    missing = [n for n in want if n not in by_name]
    extra = [a["name"] for a in actual if a["name"] not in set(want)]
    problems = [f"{kind} {', '.join(missing)} missing" if missing else "",
                f"unexpected {kind} {', '.join(extra)}" if extra else ""]
    for spec in declared:
        if spec.name in by_name:
            problems += _compare_tensor(kind, spec, by_name[spec.name], check_shapes)
    if not missing and not extra and [a["name"] for a in actual] != want:
        notes.append(f"{kind}s in another order than declared ({_order_summary(actual)}): "
                     f"fine, Core ML binds them by name")
    return [p for p in problems if p]


def _order_summary(actual: list[dict]) -> str:
    names = [a["name"] for a in actual]
    return ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")


def compare(actual: dict, spec: ComponentSpec, notes: list[str] | None = None,
            spec_version: int | None = None) -> list[str]:
    """Every difference between a package's spec interface and the declaration (empty: match); the
    spec version is the component's deployment target's unless given."""
    notes = [] if notes is None else notes
    spec_version = spec_version_of(spec) if spec_version is None else spec_version
    problems = []
    if actual["model_type"] != "mlProgram":
        problems.append(f"model type {actual['model_type']} is not mlProgram")
    if actual["spec_version"] != spec_version:
        problems.append(f"spec version {actual['spec_version']} != {spec_version}")
    problems += _compare_tensors("input", spec.inputs, actual["inputs"], True, notes)
    # a flexible-shaped output may declare no shape in the spec; names and dtypes must still match
    outputs_flexible = any(t.flexible for t in spec.outputs)
    problems += _compare_tensors("output", spec.outputs, actual["outputs"], not outputs_flexible, notes)
    problems += _compare_tensors("state", spec.states, actual.get("states", []), True, notes)
    return problems


def check_out(out, model: str | None = None, revision: str | None = None,
              layout_name: str = DEFAULT_LAYOUT) -> list[dict]:
    """One row per package found in OUT: component, precision, problems, notes."""
    declared = declared_for(out, model, revision, layout_name)
    rows = []
    for precision in PRECISIONS:
        layout = declared.layout.for_precision(precision)
        for name in artifacts.converted(out, precision, all_names(layout_name), layout_name):
            notes: list[str] = []
            problems = compare(spec_interface(artifacts.package_path(out, precision, name, layout_name)),
                               layout[name], notes)
            rows.append({"component": name, "precision": precision, "problems": problems, "notes": notes})
    return rows


def _summary(spec: ComponentSpec) -> str:
    def fmt(t: TensorSpec):
        shape = [f"{t.flexible[i][0]}..{t.flexible[i][1]}" if t.flexible and i in t.flexible else str(d)
                 for i, d in enumerate(t.shape)]
        return f"{t.name}[{','.join(shape)}]{'' if t.dtype == 'fp16' else ':' + t.dtype}"

    short = lambda items: ", ".join(items if len(items) <= 5 else items[:3] + [f"... ({len(items)} in all)"])  # noqa
    return f"{short([fmt(t) for t in spec.inputs])} -> {short([fmt(t) for t in spec.outputs])}"


def main(argv=None) -> int:
    parser = cli.OneLineParser(prog="python -m convert.check_specs", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default=DEFAULT_OUT,
                        help=f"a converted OUT directory (default {DEFAULT_OUT})")
    parser.add_argument("--model", default=None, help="the checkpoint the packages were converted from (needed "
                                                      "when OUT has no manifest.json)")
    parser.add_argument("--revision", default=None, help="hub revision of --model")
    cli.add_layout(parser)
    cli.add_verbose(parser)

    def parse(argv):
        args = parser.parse_args(argv)
        (args.layout,) = cli.layouts(args.layout)
        return args

    def check(args) -> int:
        layout_name, out = args.layout, Path(args.out)
        if not out.is_dir():
            raise SpecCheckError(f"{out} does not exist: convert first (python -m convert --out {out})")
        declared = declared_for(out, args.model, args.revision, layout_name)
        rows = check_out(out, args.model, args.revision, layout_name)
        print(f"interface declared from {declared.source}")
        for line in declared.unknown:
            print(f"note: {line}")
        print(f"{'component':<24} {'precision':<9} {'spec':<6} interface")
        for row in rows:
            status = "OK" if not row["problems"] else "DIFF"
            spec = declared.layout.for_precision(row["precision"])[row["component"]]
            print(f"{row['component']:<24} {row['precision']:<9} {status:<6} {_summary(spec)}")
            for problem in row["problems"]:
                print(f"    - {problem}")
            for note in row["notes"]:
                print(f"    note: {note}")
        bad = sum(bool(r["problems"]) for r in rows)
        print(f"{len(rows)} packages checked, {bad} differ from the declared interface")
        return 1 if bad or not rows else 0

    from checkpoint.loading import CheckpointError

    return cli.run(argv, parse, check,
                   expected=(SpecCheckError, DeclarationError, CheckpointError, artifacts.ArtifactError))


if __name__ == "__main__":
    sys.exit(main())
