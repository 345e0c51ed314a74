"""`python -m convert`: convert VoxCPM 1.5 to Core ML packages (see --help)."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from contract.cli import OneLineParser, UsageError, fail

from .interface import COMPONENTS

DEFAULT_MODEL = "openbmb/VoxCPM1.5"
DEFAULT_OUT = "build/voxcpm-1.5-coreml"
PRECISION_CHOICES = {"fp16": ("fp16",), "int8": ("int8",), "all": ("fp16", "int8"), "fp32": ("fp32",)}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m convert",
                     description="Convert VoxCPM 1.5 to Core ML ML Programs (macOS14, fp16 compute) and write "
                                 "OUT/{fp16,int8}/<component>.mlpackage, OUT/constants/, OUT/constants_bin/ and "
                                 "OUT/manifest.json. Components whose inputs are unchanged are skipped.")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"Hugging Face id or checkpoint directory (default {DEFAULT_MODEL})")
    parser.add_argument("--revision", default=None, help="hub revision to pin (with a hub id)")
    parser.add_argument("--precision", default="int8",
                        help="fp16, int8 or all (= fp16 and int8; default int8), or fp32: a reference build for "
                             "parity checks (not for apps), FP32 compute and fp32 I/O, written to OUT/fp32/")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    parser.add_argument("--force", action="store_true", help="rebuild even the artifacts that are up to date")
    parser.add_argument("--components", default=",".join(COMPONENTS),
                        help=f"comma-separated subset of {','.join(COMPONENTS)} (default all)")
    return parser


def parse_settings(argv):
    from .pipeline import Settings

    args = build_parser().parse_args(argv)
    if args.precision not in PRECISION_CHOICES:
        raise UsageError(f"unknown precision {args.precision!r}: use fp16, int8, all or fp32")
    components = tuple(c.strip() for c in args.components.split(",") if c.strip())
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown or not components:
        raise UsageError(f"unknown component {','.join(unknown) or '(none given)'}: choose from {','.join(COMPONENTS)}")
    return Settings(model=args.model, out=Path(args.out), precisions=PRECISION_CHOICES[args.precision],
                    components=components, revision=args.revision, force=args.force)


def main(argv=None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        settings = parse_settings(argv)
    except UsageError as exc:
        return fail(str(exc))
    from patches.loading import CheckpointError

    from .pipeline import ConvertError, run, summary

    start = time.time()
    try:
        rows = run(settings)
    except (ConvertError, CheckpointError) as exc:
        return fail(str(exc))
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        return fail(f"cannot write{where} ({exc.strerror or exc}): free disk space or choose another --out; "
                     f"earlier artifacts are intact")
    except KeyboardInterrupt:
        print("error: interrupted: earlier artifacts are intact; run again to finish", file=sys.stderr)
        return 130
    print(summary(rows, time.time() - start))
    print(f"output: {settings.out}")
    return 0
