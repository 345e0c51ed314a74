"""python -m runtime.coverage: every op of coremltools' iOS15-18 opsets runs, is tested, and the
README's and runtime/COVERAGE.md's tables say so."""
import re
from pathlib import Path

import pytest

from runtime import coverage

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def table():
    return coverage.rows(tests_dir=HERE)


def test_every_op_of_the_opsets_has_a_kernel(table):
    assert len(table) >= 160  # coremltools 9.0: 169 ops in iOS15-18 and the coreml dialect
    assert [r["op"] for r in table if not r["kernel"]] == []


def test_every_op_is_built_by_a_test(table):
    assert [r["op"] for r in table if not r["tested_by"]] == []


def test_departures_name_real_ops(table):
    assert set(coverage.DEPARTURES) <= {r["op"] for r in table}


def test_readme_table_is_current(table):
    readme = (ROOT / "README.md").read_text()
    assert coverage.readme_table(table) in readme, "regenerate it: python -m runtime.coverage --readme"


def test_coverage_md_lists_every_op_with_its_kernel(table):
    listed = {}
    for line in (ROOT / "runtime" / "COVERAGE.md").read_text().splitlines():
        m = re.match(r"\| `([^`]+)` \| [^|]+ \| ([^|]+) \|", line)
        if m:
            listed[m.group(1)] = m.group(2).strip()
    assert listed == {r["op"]: r["kernel"] for r in table}, \
        "regenerate it: python -m runtime.coverage --tests tests/runtime --conformance <json> --write runtime/COVERAGE.md"


def test_a_missing_kernel_is_reported(monkeypatch):
    monkeypatch.setattr(coverage, "kernel_files", lambda: {})  # negative control: no kernel registered
    text = coverage.markdown(coverage.rows())
    assert "Left out: _const_symbolic" not in text  # materialised at load, not a kernel
    assert "| `lstm` | 15, 16, 17, 18 | **none** |" in text
    assert re.search(r"Left out: .*\blstm\b", text)


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert coverage.main(["--tests", str(tmp_path / "absent")]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert coverage.main(["--conformance", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)
