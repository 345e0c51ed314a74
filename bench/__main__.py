"""`python -m bench [--out OUT] [--skip-runtime-step]`: every measurement `make bench` makes (see bench/__init__.py)."""
import argparse
import sys
from pathlib import Path

from contract import artifacts
from contract.defaults import DEFAULT_OUT

from . import layouts, runtime_step

parser = argparse.ArgumentParser(prog="python -m bench", description="every measurement make bench makes")
parser.add_argument("--out", default=DEFAULT_OUT, help="converted packages to compare layout by layout (bench.layouts)")
parser.add_argument("--report-dir", type=Path, default=Path("build/bench"))
parser.add_argument("--skip-runtime-step", action="store_true", help="only the layouts comparison")
args = parser.parse_args()
status = 0 if args.skip_runtime_step else runtime_step.main(["--out", str(args.report_dir)])
if artifacts.manifest_path(args.out).is_file():
    status = status or layouts.main(["--out", str(args.out), "--report-dir", str(args.report_dir)])
else:
    print(f"bench.layouts skipped: {args.out} holds no conversion (make convert OUT={args.out} LAYOUT=all)")
sys.exit(status)
