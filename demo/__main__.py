"""`python -m demo`: the whole toolkit end to end on a tiny random checkpoint, offline.

    fixture (checkpoint.fixture) -> convert fp16 + int8 -> validate -> generate a wav

Each step runs as its own `python -m …` process, as a user would type it (and so that this
module never imports torch). The speech is noise-like: the checkpoint's
weights are random. What the demo shows is that every stage runs and where its output lands.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = "Hello, this is a test of the voice cloning system."
TINY_GATES = ROOT / "validate" / "gates" / "tiny.json"  # validate's gates for random tiny weights


def _run(title: str, args: list[str], allowed=(0,)) -> int:
    print(f"\n== {title}: python {' '.join(map(str, args))}", flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.time()
    code = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=env).returncode
    print(f"== {title}: exit {code} in {time.time() - start:.0f} s", flush=True)
    if code not in allowed:
        raise SystemExit(f"error: demo step '{title}' failed (exit {code}): see its output above")
    return code


def _validate_available() -> bool:
    return (ROOT / "validate" / "__main__.py").is_file()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/demo", help="where everything goes (default build/demo)")
    parser.add_argument("--precision", default="int8", choices=("int8", "fp16"), help="for the wav (default int8)")
    parser.add_argument("--skip-validate", action="store_true", help="skip python -m validate")
    args = parser.parse_args(argv)
    out = Path(args.out)
    fixture, artifacts, wav, stats = out / "fixture", out / "coreml", out / "demo.wav", out / "demo-stats.json"
    out.mkdir(parents=True, exist_ok=True)

    _run("fixture", ["-m", "checkpoint.fixture", "--out", fixture])
    _run("convert", ["-m", "convert", "--model", fixture, "--precision", "all", "--out", artifacts])
    report, validation = artifacts / "validation" / "report.md", "skipped"
    if args.skip_validate:
        validation = "skipped (--skip-validate)"
    elif not _validate_available():
        validation = "skipped (validate/ is not available)"
    else:
        gates = ["--gates", TINY_GATES] if TINY_GATES.is_file() else []
        # exit 1 = a gate failed: worth reading in the report, not a reason to stop the demo
        code = _run("validate", ["-m", "validate", "--model", fixture, "--out", artifacts, "--precision", "all",
                                 "--no-progress", "--steps", "16", "--e2e-max-len", "8", *gates], allowed=(0, 1))
        validation = f"{report} ({'all gates pass' if code == 0 else 'some gates FAIL: read the report'})"
    _run("generate", ["-m", "generate", "--out", artifacts, "--precision", args.precision, "--text", TEXT,
                      "--wav", wav, "--seed", "0", "--stats", stats])
    print(f"\ndemo done\n  artifacts: {artifacts}\n  validation report: {validation}\n  wav: {wav}\n  stats: {stats}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
