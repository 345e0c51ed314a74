"""`python -m bench`: every measurement `make bench` makes (see bench/__init__.py)."""
import argparse
import logging
import sys
from pathlib import Path

from . import components, runtime_step


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench", description="the interpreter against torch eager: a "
                                "full-size decoder step, then each converted component of MODEL in PACKAGES")
    components.add_arguments(p)
    p.add_argument("--only", choices=("runtime_step", "components"), help="one of the two measurements")
    p.add_argument("--out", type=Path, default=Path("build/bench"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bench").setLevel(logging.INFO)
    if args.only in (None, "runtime_step"):
        runtime_step.run(runtime_step.FULL, args.out, runs=15)
    if args.only in (None, "components"):
        names = tuple(c.strip() for c in args.components.split(",") if c.strip())
        components.run(args.model, args.packages, args.out, runs=10, components=names)
    return 0


sys.exit(main())
