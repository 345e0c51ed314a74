"""Run coremltools' own MIL op tests with every prediction made by runtime.mil, and count per op.

    python -m runtime.conformance [--ops lstm,resize] [--paths iOS17/test_recurrent.py]
                                  [-k EXPR] [--sample N] [--json build/conformance.json]

coremltools' op tests (``coremltools/converters/mil/mil/ops/tests``, iOS14..iOS18 modules) build
each case with ``run_compare_builder``: a MIL program, ``ct.convert(prog, ...)`` to a temporary
.mlpackage, then ``MLModel.predict`` on inputs passed as float32 and a comparison with expected
values computed by numpy/torch. Off macOS those tests skip or stop before predicting; this module
makes them run on Linux, with the interpreter in place of Core ML:

- environment, read by coremltools' ``testing_reqs`` at import: ``PYMIL_TEST_TARGETS=mlprogram``
  (no neural networks), ``INCLUDE_MIL_FP32_UNIT_TESTS=1`` (fp32 as well as fp16 programs) and
  ``RUN_BACKWARD_COMPATIBILITY=1`` (every opset from the op's own up to iOS18);
- ``coremltools.models.utils._macos_version`` answers (15, 4): ``skipif(macOS < x)`` marks and
  ``compare_backend``'s "packages need macOS 12" check see a macOS that runs iOS18 programs
  (``_is_macos()`` stays False, so no deployment target is filtered out as too new);
- ``testing_utils._IS_MACOS = True``: ``compare_backend``/``compare_shapes`` predict and compare
  instead of returning early;
- ``ct.convert``'s closing full ``gc.collect()`` is made a young-generation one (0.9 s a case
  otherwise, most of a case's time);
- ``MLModel.predict`` / ``MLModel.make_state``: the converted package (``mlmodel.package_path``)
  is loaded once per MLModel with ``runtime.mil.MilModel`` and run; the inputs first go through
  coremltools' own Python-side preparation (torch -> numpy, float16 -> float32), outputs come
  back as Core ML's binding returns them (fp16 arrays widened to fp32).

A case counts as executed when it reached the interpreter. Each executed case is attributed to
every op type in its program (const/constexpr included), so the per-op table says which ops are
exercised and where they fail. Failure reasons are classed: ``no kernel`` (UnsupportedOpError),
``input`` (InputError), ``constexpr`` (a const/constexpr op could not be materialised), ``kernel
error`` (a kernel raised), ``mismatch`` (the test's comparison failed), ``mismatch (fp16 data, fp32
tolerance)`` (the same in a precision='fp32' case whose program holds fp16 values: coremltools
computes those cases' expected values from the unrounded fp32 data, or in numpy fp16 arithmetic
where the program computes in fp32, and allows atol 1e-4, which no runtime executing the program
as typed meets; Apple's CI does not run precision='fp32' cases), ``other``.
"""
import argparse
import gc
import json
import os
import shutil
import sys
import time
import traceback
import types
import zlib
from collections import Counter, defaultdict
from pathlib import Path

ENV = {"PYMIL_TEST_TARGETS": "mlprogram", "INCLUDE_MIL_FP32_UNIT_TESTS": "1", "RUN_BACKWARD_COMPATIBILITY": "1"}
FAKE_MACOS = (15, 4)


def tests_dir():
    """coremltools' op-test package (third-party code; the project's own tests are never read)."""
    from coremltools.converters.mil.mil.ops import tests as op_tests

    return Path(op_tests.__file__).parent


class Recorder:
    """What happened in each test case: ops run, outcome, failure class and message."""

    def __init__(self):
        self.cases = {}
        self.current = None
        self.temp_packages = []

    def start(self, nodeid):
        self.current = self.cases[nodeid] = {"ops": set(), "executed": False, "outcome": None,
                                             "reason": None, "message": None}

    def ran(self, ops, fp16=False):
        if self.current is not None:
            self.current["ops"] |= ops
            self.current["executed"] = True
            self.current["fp16"] = self.current.get("fp16", False) or fp16

    def failed_inside(self, reason, exc):
        if self.current is not None and self.current["reason"] is None:
            self.current["reason"], self.current["message"] = reason, _one_line(exc)


RECORD = Recorder()


def _one_line(exc):
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _classify(exc):
    from . import errors

    chain, e = [], exc
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    if any(isinstance(x, errors.UnsupportedOpError) for x in chain):
        return "no kernel"
    if any(isinstance(x, errors.InputError) for x in chain):
        return "input"
    frames = traceback.extract_tb(chain[-1].__traceback__)
    if any(f.filename.endswith(os.path.join("mil", "materialise.py")) for f in frames):
        return "constexpr"
    if any(isinstance(x, RuntimeError) and str(x).startswith("MIL op ") for x in chain):
        return "kernel error"
    return "other"


def program_facts(mlmodel):
    """(op types in every block of the package's functions, whether any value in it is fp16)."""
    from coremltools.converters.mil.mil import types

    from .mil import loader

    prog = loader.load_program(mlmodel, mlmodel.get_spec())
    found, fp16 = set(), False

    def walk(block):
        nonlocal fp16
        for op in block.operations:
            found.add(op.op_type)
            fp16 = fp16 or any(types.is_tensor(v.sym_type) and v.dtype == types.fp16 for v in op.outputs)
            for b in op.blocks:
                walk(b)

    for f in prog.functions.values():
        fp16 = fp16 or any(types.is_tensor(v.sym_type) and v.dtype == types.fp16 for v in f.inputs.values())
        walk(f)
    return found, fp16


def _interpreter(mlmodel):
    cached = getattr(mlmodel, "_conformance_mil", None)
    if cached is not None:
        return cached
    from .mil import MilModel

    ops, fp16 = program_facts(mlmodel)
    RECORD.ran(ops, fp16)
    model = MilModel.from_path(mlmodel.package_path, function_name=mlmodel.function_name)
    mlmodel._conformance_mil = model
    return model


def _as_coreml_returns(v):
    import numpy as np

    if isinstance(v, np.ndarray) and v.dtype == np.float16:
        return v.astype(np.float32)  # the binding hands fp16 multiarrays back as fp32
    return v


def _predict(self, data, state=None):
    if isinstance(data, list):
        return [_predict(self, d) for d in data]
    if self._spec.WhichOneof("Type") != "mlProgram":
        import pytest

        # a few tests convert without a target and get a neural network: not what runtime.mil runs
        pytest.skip("a neural-network model: runtime.mil interprets ML Programs only")
    try:
        model = _interpreter(self)
    except Exception as exc:
        RECORD.failed_inside(_classify(exc), exc)
        raise
    data = dict(data)
    # coremltools' own Python-side preparation (names, torch -> numpy, fp16 -> fp32)
    self._verify_input_dict(data)
    self._convert_tensor_to_numpy(data)
    self._update_float16_multiarray_input_to_float32(data)
    try:
        out = model.predict(data, state=None if state is None else state._conformance_state)
    except Exception as exc:
        RECORD.failed_inside(_classify(exc), exc)
        raise
    return {k: _as_coreml_returns(v) for k, v in out.items()}


class _StateProxy:
    """The MLState proxy API (read_state/write_state) over a MilState."""

    def __init__(self, state):
        self.state = state

    def read_state(self, name):
        return self.state.read(name)

    def write_state(self, name, value):
        self.state.write(name, value)


def _make_state(self):
    from coremltools.models.model import MLState

    mil_state = _interpreter(self).new_state()
    st = MLState(_StateProxy(mil_state))
    st._conformance_state = mil_state
    return st


def install():
    """Patch coremltools so that its op tests run here and predict through the interpreter."""
    os.environ.update(ENV)
    import coremltools.models.utils as ct_utils
    from coremltools.converters.mil import testing_utils
    from coremltools.converters import _converters_entry
    from coremltools.models import model as ct_model

    ct_utils._macos_version = lambda: FAKE_MACOS
    # ct.convert ends with a full gc.collect(): ~0.9 s with torch and 37k collected cases in the heap
    _converters_entry.gc = types.SimpleNamespace(collect=lambda *a: gc.collect(0))
    testing_utils._IS_MACOS = True
    ct_model.MLModel.predict = _predict
    ct_model.MLModel.make_state = _make_state
    original_init = ct_model.MLModel.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if getattr(self, "is_temp_package", False) and self.package_path:
            RECORD.temp_packages.append(self.package_path)

    ct_model.MLModel.__init__ = init


class Plugin:
    """pytest hooks: one record per test case (and a sample of the cases when asked)."""

    def __init__(self, sample=1):
        self.sample = sample

    def pytest_collection_modifyitems(self, session, config, items):
        if self.sample <= 1:
            return
        # a fixed pseudo-random 1/N of each test function's cases (crc32 of the case id: the same
        # cases before and after a change), and always its first one so no test function is lost
        seen, keep, dropped = set(), [], []
        for item in items:
            func = item.nodeid.split("[")[0]
            first = func not in seen
            seen.add(func)
            (keep if first or zlib.crc32(item.nodeid.encode()) % self.sample == 0 else dropped).append(item)
        items[:] = keep
        config.hook.pytest_deselected(items=dropped)

    def pytest_runtest_setup(self, item):
        RECORD.start(item.nodeid)

    def pytest_runtest_logreport(self, report):
        case = RECORD.cases.setdefault(report.nodeid, {"ops": set(), "executed": False, "outcome": None,
                                                       "reason": None, "message": None})
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            case["outcome"] = report.outcome
            if report.outcome == "failed" and case["reason"] is None:
                case["reason"], case["message"] = _reason_from_report(report, case)
            elif report.outcome == "skipped" and isinstance(report.longrepr, tuple):
                case["message"] = str(report.longrepr[2])[:300]  # (file, line, "Skipped: why")

    def pytest_runtest_teardown(self, item):
        # ct.convert leaves one temporary package per case until exit: thousands of them
        for path in RECORD.temp_packages:
            shutil.rmtree(path, ignore_errors=True)
        RECORD.temp_packages.clear()


def _reason_from_report(report, case):
    text = str(report.longrepr) if report.longrepr is not None else ""
    lines = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("E ")]
    message = " | ".join(ln for ln in lines[:4] if ln)[:300] if lines else (text.strip().splitlines() or [""])[-1][:300]
    if not case["executed"]:
        return "not executed", message
    if not ("AssertionError" in text or "Mismatch" in text):
        return "other", message
    if case.get("fp16") and "precision='fp32'" in report.nodeid:
        # coremltools' fp32 cases compute their expected values from the unrounded data (or in fp16
        # numpy) and allow atol 1e-4: a program holding fp16 inputs or weights cannot meet that
        return "mismatch (fp16 data, fp32 tolerance)", message
    return "mismatch", message


def summarise(cases):
    """Overall counts and per-op pass/fail over the executed cases."""
    overall = Counter()
    per_op = defaultdict(lambda: {"passed": 0, "failed": 0, "reasons": Counter()})
    reasons = Counter()
    for case in cases.values():
        outcome = case["outcome"] or "unknown"
        if outcome == "skipped":
            overall["skipped"] += 1
            continue
        if not case["executed"]:
            overall[f"not executed, {outcome}"] += 1
            continue
        overall[f"executed, {outcome}"] += 1
        if outcome == "failed":
            reasons[case["reason"]] += 1
        for op in case["ops"]:
            row = per_op[op]
            row["passed" if outcome == "passed" else "failed"] += 1
            if outcome == "failed":
                row["reasons"][case["reason"]] += 1
    return dict(overall), dict(reasons), {op: {**r, "reasons": dict(r["reasons"])} for op, r in sorted(per_op.items())}


def print_report(overall, reasons, per_op, out=sys.stdout):
    print("\ncases:", ", ".join(f"{k} {v}" for k, v in sorted(overall.items())), file=out)
    ranked = sorted(reasons.items(), key=lambda kv: -kv[1])
    print("failures of executed cases by reason:", ", ".join(f"{k} {v}" for k, v in ranked), file=out)
    print(f"\n{'op':40s} {'pass':>6s} {'fail':>6s}  main failure reason", file=out)
    for op, row in per_op.items():
        main = max(row["reasons"].items(), key=lambda kv: kv[1])[0] if row["reasons"] else ""
        print(f"{op:40s} {row['passed']:6d} {row['failed']:6d}  {main}", file=out)


def run(paths=None, ops=None, keyword=None, json_path=None, quiet=True, sample=1):
    """Run the selected op tests; returns (overall, reasons, per_op, cases)."""
    install()
    import pytest

    root = tests_dir()
    targets = [str(root / p) for p in paths] if paths else [str(root)]
    args = targets + ["-q", "--tb=short", "-p", "no:cacheprovider", "-p", "no:warnings", "--rootdir", str(root),
                      "-c", os.devnull, "-o", "console_output_style=classic"]
    expr = _keyword(ops, keyword)
    if expr:
        args += ["-k", expr]
    if quiet:
        args += ["--no-header", "-o", "log_level=ERROR"]
    t0 = time.perf_counter()
    pytest.main(args, plugins=[Plugin(sample)])
    elapsed = time.perf_counter() - t0
    overall, reasons, per_op = summarise(RECORD.cases)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        cases = {k: {**v, "ops": sorted(v["ops"])} for k, v in RECORD.cases.items()}
        Path(json_path).write_text(json.dumps({"elapsed_s": round(elapsed, 1), "sample": sample, "overall": overall, "reasons": reasons,
                                               "per_op": per_op, "cases": cases}, indent=1))
    return overall, reasons, per_op, RECORD.cases


def _keyword(ops, keyword):
    parts = []
    if ops:
        # test classes are CamelCase op names (TestUpsampleBilinear); -k matches case-insensitively
        parts.append("(" + " or ".join(op.replace("_", "") for op in ops) + ")")
    if keyword:
        parts.append(f"({keyword})")
    return " and ".join(parts)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", help="comma-separated op names: run the test classes named after them")
    p.add_argument("--paths", nargs="*", help="test modules relative to coremltools' ops/tests (e.g. iOS17/test_recurrent.py)")
    p.add_argument("-k", dest="keyword", help="extra pytest -k expression")
    p.add_argument("--json", help="write every case and the per-op table here")
    p.add_argument("--sample", type=int, default=1,
                   help="run a fixed 1/N of each test function's cases (all 37k take ~3 h of one core)")
    args = p.parse_args(argv)
    ops = [o.strip() for o in args.ops.split(",") if o.strip()] if args.ops else None
    overall, reasons, per_op, _ = run(args.paths, ops, args.keyword, args.json, sample=args.sample)
    print_report(overall, reasons, per_op)
    return 0


if __name__ == "__main__":
    sys.exit(main())
