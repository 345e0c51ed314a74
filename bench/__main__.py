"""`python -m bench`: every measurement `make bench` makes (see bench/__init__.py)."""
import argparse
import logging
import sys
from pathlib import Path

from contract import artifacts

from . import components, layouts, runtime_step

MEASUREMENTS = ("runtime_step", "components", "layouts")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench", description="the interpreter against torch eager: a "
                                "full-size decoder step, then each converted component of MODEL in PACKAGES, "
                                "then the layouts converted in PACKAGES side by side")
    components.add_arguments(p)
    p.add_argument("--only", choices=MEASUREMENTS, help="one of the measurements")
    p.add_argument("--out", type=Path, default=Path("build/bench"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bench").setLevel(logging.INFO)
    if args.only in (None, "runtime_step"):
        runtime_step.run(runtime_step.FULL, args.out, runs=15)
    if args.only in (None, "components"):
        names = tuple(c.strip() for c in args.components.split(",") if c.strip())
        components.run(args.model, args.packages, args.out, runs=10, components=names)
    if args.only in (None, "layouts"):
        if not artifacts.manifest_path(args.packages).is_file():
            print(f"bench.layouts skipped: {args.packages} holds no conversion (make convert LAYOUT=all)")
        else:
            layouts.main(["--out", str(args.packages), "--report-dir", str(args.out)])
    return 0


sys.exit(main())
