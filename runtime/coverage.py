"""List every MIL op of coremltools' iOS15-18 opsets: kernel, tests, conformance, departures from Core ML.

    python -m runtime.coverage [--tests tests/runtime] [--conformance build/conformance.json] [--write runtime/COVERAGE.md]
    python -m runtime.coverage --readme        # the README's table: every op by kernel module

Ops are read from coremltools' op registry (ops/defs/iOS15..iOS18 and the coreml dialect), so a
new coremltools version shows up here as new rows. "kernel" is the file under runtime/mil/kernels
that registers the op (const/constexpr ops are materialised at load: runtime/mil/materialise.py);
"tested by" lists the test files under --tests that build the op (``mb.<op>(`` or its quoted name; the
toolkit's own code never reads its tests, so the directory is the caller's to give);
"conformance" is the op's pass/fail count over coremltools' own op tests when a
``python -m runtime.conformance --json`` result is given.
"""
import argparse
import json
import re
import sys
from pathlib import Path

# Where a kernel is known to depart from Core ML, or follows a reading of an ambiguous definition.
DEPARTURES = {
    "random_bernoulli": "Core ML's generator is not public: same distribution, other values (seeded runs repeat)",
    "random_categorical": "same as random_bernoulli",
    "random_normal": "same as random_bernoulli",
    "random_uniform": "same as random_bernoulli",
    "gru": "iOS18 reset_after=True computes torch.nn.GRU's formula; coremltools' own torch-parity case for it is "
           "xfail on Core ML (rdar://128479517), so Core ML's result there is not known",
    "crop_resize": "sampling modes other than (STRICT_)ALIGN_CORNERS are laid over the box as resize_bilinear lays "
                   "them over an axis (inferred); coremltools' one iOS15 UNALIGN_CORNERS case (an inverted box) "
                   "expects values this does not give",
    "local_response_norm": "normalises over axis -3 (the neural-network layer's channel axis), as coremltools' own "
                           "rank-3 fp32 example requires; the definition's [n, C, *D] says axis 1 - they agree at rank 4",
    "quantize": "ties round half to even before the zero point is added (the definition and value_inference); "
                "torch adds the zero point first, which differs at exact halves with an odd zero point",
    "resize": "NEAREST_NEIGHBOR rounds the sampling mode's grid point (coremltools' DEFAULT example); ties at .5 "
              "round up, which no example pins down",
    "non_maximum_suppression": "the semantics of coremltools' reference implementation (at least one box kept); "
                               "its op tests need TensorFlow (not installed), so only tests/runtime checks it; "
                               "iOS17 has no example to check against",
    "conv_quantized": "only coremltools' neural-network backend emits it; the LUT reading (quant_scale as the table) "
                      "is inferred",
    "classify": "returns the label and a {class: probability} dict as Python values, as MLModel.predict does",
    "conv": "accumulates in fp32 and rounds the output to fp16 once; see TRIALS.md (fp16 accumulation) for Core ML's "
            "CPU path",
    "conv_transpose": "as conv",
    "gather": "out-of-range indices raise (Core ML's result is undefined)",
    "gather_along_axis": "as gather",
    "gather_nd": "as gather",
    "scatter": "out-of-range or (iOS17+) negative indices raise, with or without validate_indices; Core ML's "
               "result is undefined without it (coremltools' invalid-index cases expect wrong values) and its error "
               "text differs with it",
    "scatter_along_axis": "as scatter",
    "scatter_nd": "as scatter",
    "reverse_sequence": "lengths outside [0, len] raise (Core ML's result is undefined)",
}
MATERIALISED = "materialise.py (at load)"
ARTIFACT = "mismatch (fp16 data, fp32 tolerance)"  # runtime/conformance.py: no runtime passes these


def mil_ops():
    """{op: [opset names]} for every op of the iOS15..iOS18 opsets, and the coreml dialect's ops."""
    import coremltools as ct
    from coremltools.converters.mil.mil import ops  # noqa: F401  (registers every op)
    from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry

    wanted = [ct.target.iOS15, ct.target.iOS16, ct.target.iOS17, ct.target.iOS18]
    table = {}
    for name, versions in SSAOpRegistry.core_ops.items():
        sets = [t.name for t in wanted if t in versions]
        if sets:
            table[name] = sets
    from coremltools.converters.mil.mil.ops.defs import coreml_dialect  # noqa: F401

    for name in SSAOpRegistry.dialect_ops:
        if name.startswith("coreml_"):  # the dialect that is serialised (torch_*/complex_* are lowered before)
            table[name] = ["18 (coreml dialect)"]
    return dict(sorted(table.items()))


def kernel_files():
    """{op: kernel module file name} from the registry."""
    from .mil import registry

    registry._load_all()
    return {op: Path(k.fn.__code__.co_filename).name for op, k in registry.KERNELS.items()}


def test_files(op_names, tests_dir):
    """{op: [test files under tests_dir that build it]}."""
    found = {op: [] for op in op_names}
    for path in sorted(Path(tests_dir).glob("test_*.py")):
        text = path.read_text()
        for op in op_names:
            name = re.escape(op)
            if re.search(rf"\bmb\.{name}\b|[\"']{name}[\"']|def test_{name}_", text):
                found[op].append(path.name)
    return found


def rows(conformance=None, tests_dir=None):
    """One row per op; "tested_by" is None when no tests_dir is given."""
    ops = mil_ops()
    kernels = kernel_files()
    tests = test_files(list(ops), tests_dir) if tests_dir else {}
    from .mil.materialise import is_constant_op

    per_op = (conformance or {}).get("per_op", {})
    out = []
    for op, sets in ops.items():
        kernel = MATERIALISED if is_constant_op(type("Op", (), {"op_type": op})) else kernels.get(op)
        conf = per_op.get(op)
        out.append({"op": op, "opsets": sets, "kernel": kernel, "tested_by": tests.get(op) if tests_dir else None,
                    "conformance": None if conf is None else (conf["passed"], conf["failed"],
                                                               conf["reasons"].get(ARTIFACT, 0)),
                    "departure": DEPARTURES.get(op, "")})
    return out


def _summary(conformance):
    """One sentence of the conformance run's totals and failure reasons."""
    o = conformance.get("overall", {})
    reasons = sorted(conformance.get("reasons", {}).items(), key=lambda kv: -kv[1])
    return (f"Conformance: coremltools' own op tests (1/{conformance.get('sample', 1)} sample of each test "
            f"function's cases) routed through the interpreter: "
            + ", ".join(f"{k} {v}" for k, v in sorted(o.items())) + "; failures by reason: "
            + ", ".join(f"{k} {v}" for k, v in reasons) + ". The pass/fail column counts the cases whose "
            "program holds the op; \"fp16 data\" failures are the class no runtime passes (runtime/conformance.py).")


def markdown(table, conformance=None, command="python -m runtime.coverage"):
    """The coverage table; a tests column when the rows were scanned for tests, a conformance one when given."""
    scanned = any(r["tested_by"] is not None for r in table)
    have = sum(1 for r in table if r["kernel"])
    title = f"# MIL op coverage of runtime.mil ({have} of {len(table)} ops of coremltools' iOS15-18 opsets run"
    title += f"; {sum(1 for r in table if r['tested_by'])} have tests)" if scanned else ")"
    lines = [title, "", f"Generated by `{command}`; do not edit by hand.", ""]
    if conformance:
        lines += [_summary(conformance), ""]
    missing = [r["op"] for r in table if not r["kernel"]]
    lines += ["Left out: " + (", ".join(missing) if missing else "none") + ".", ""]
    head = ["op", "opsets", "kernel"] + (["tested by"] if scanned else []) + (
        ["conformance pass/fail"] if conformance else []) + ["departs from Core ML"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        cells = [f"`{r['op']}`", ", ".join(s[3:] if len(s) == 5 else s for s in r["opsets"]), r["kernel"] or "**none**"]
        if scanned:
            cells.append(", ".join(t.replace("test_", "").replace(".py", "") for t in r["tested_by"]) or "—")
        if conformance:
            cells.append(_conformance_cell(r["conformance"]))
        cells.append(r["departure"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def readme_table(table):
    """The README's form: one row per kernel module with every op it runs; ops marked * depart from Core ML."""
    by_kernel = {}
    for r in table:
        by_kernel.setdefault(r["kernel"] or "**none**", []).append(f"`{r['op']}`" + ("*" if r["departure"] else ""))
    lines = ["| runtime/mil/ | ops |", "|---|---|"]
    lines += [f"| {k if k.startswith(('materialise', '*')) else 'kernels/' + k} | {', '.join(ops)} |"
              for k, ops in sorted(by_kernel.items())]
    return "\n".join(lines) + "\n"


def _conformance_cell(counts):
    if counts is None:
        return "—"
    passed, failed, artifact = counts
    return f"{passed}/{failed}" + (f" ({artifact} fp16 data)" if artifact else "")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tests", help="a directory of test files to scan for each op (the tests column)")
    p.add_argument("--conformance", help="a python -m runtime.conformance --json result, for pass/fail columns")
    p.add_argument("--write", help="write the markdown table here (else print it)")
    p.add_argument("--readme", action="store_true", help="print the README's table (ops by kernel module) instead")
    args = p.parse_args(argv)
    if args.tests and not Path(args.tests).is_dir():
        print(f"error: --tests {args.tests} is not a directory: give the directory of the runtime's tests",
              file=sys.stderr)
        return 2
    try:
        conformance = json.loads(Path(args.conformance).read_text()) if args.conformance else None
    except (OSError, ValueError) as exc:
        print(f"error: cannot read --conformance {args.conformance} ({exc}): give a python -m runtime.conformance "
              "--json file", file=sys.stderr)
        return 2
    command = " ".join(["python -m runtime.coverage"] + (argv if argv is not None else sys.argv[1:]))
    table = rows(conformance, args.tests)
    text = readme_table(table) if args.readme else markdown(table, conformance, command)
    if args.write:
        Path(args.write).write_text(text)
        print(f"wrote {args.write}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
