"""`python -m convert`: convert VoxCPM 1.5 to Core ML packages (see --help)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from contract import cli


def build_parser() -> argparse.ArgumentParser:
    parser = cli.OneLineParser(prog="python -m convert",
                               description="Convert VoxCPM 1.5 to Core ML ML Programs (macOS14, fp16 compute) and "
                                           "write OUT/{fp16,int8}/<component>.mlpackage, OUT/constants/, "
                                           "OUT/constants_bin/ and OUT/manifest.json. Components whose inputs are "
                                           "unchanged are skipped.")
    cli.add_model(parser)
    cli.add_lora(parser)
    parser.add_argument("--precision", default="int8",
                        help="fp16, int8 or all (= fp16 and int8; default int8), or fp32: a reference build for "
                             "parity checks (not for apps), FP32 compute and fp32 I/O, written to OUT/fp32/")
    cli.add_out(parser, "output directory")
    cli.add_verbose(parser)
    cli.add_layout(parser)
    parser.add_argument("--force", action="store_true", help="rebuild even the artifacts that are up to date")
    cli.add_components(parser)
    parser.add_argument("--stream-decoder", action="store_true",
                        help="also convert the streaming VAE decoder (audio_vae_stream_decoder: one patch per call, "
                             "its contexts in and out; exact streaming on macOS 14; not one of the published six)")
    return parser


def _components(args, layout: str) -> tuple[str, ...]:
    from contract.layout import all_names
    from contract.streaming import NAME as STREAM_DECODER

    chosen = cli.components(args.components, layout)
    if not args.stream_decoder or STREAM_DECODER in chosen:
        return chosen
    if STREAM_DECODER not in all_names(layout):
        raise cli.UsageError(f"the {layout} layout has no streaming decoder: leave out --stream-decoder")
    return chosen + (STREAM_DECODER,)


def parse_settings(argv):
    from .pipeline import Settings

    args = build_parser().parse_args(argv)
    (layout,) = cli.layouts(args.layout)
    adapter, adapter_config = cli.lora(args)
    return Settings(model=args.model, out=Path(args.out), precisions=cli.precisions(args.precision),
                    components=_components(args, layout), revision=args.revision, force=args.force,
                    layout=layout, lora=adapter, lora_config=adapter_config)


def convert(settings) -> int:
    from .pipeline import run, summary

    start = time.time()
    rows, notes = run(settings)
    print(summary(rows, time.time() - start))
    for note in notes:
        print(note)
    print(f"output: {settings.out}")
    return 0


def main(argv=None) -> int:
    from checkpoint.loading import CheckpointError

    from .pipeline import ConvertError

    return cli.run(argv, parse_settings, convert, expected=(ConvertError, CheckpointError),
                   interrupted="interrupted: earlier artifacts are intact; run again to finish",
                   cannot_write="free disk space or choose another --out; earlier artifacts are intact")
