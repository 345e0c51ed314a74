"""`python -m convert`: convert VoxCPM 1.5 to Core ML packages (see --help)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from contract import cli
from contract.defaults import FAST_CONTEXT, INFERENCE_TIMESTEPS, PREFILL_CHUNK


def build_parser() -> argparse.ArgumentParser:
    parser = cli.OneLineParser(prog="python -m convert",
                               description="Convert VoxCPM 1.5 to Core ML ML Programs (fp16 compute) and "
                                           "write OUT/{fp16,int8}/<component>.mlpackage (the published layout, "
                                           "macOS14), OUT/{fp16,int8}-fast/ (the fast layout, macOS15: states, "
                                           "two calls per patch), OUT/constants/, OUT/constants_bin/ and "
                                           "OUT/manifest.json. Components whose inputs are unchanged are skipped.")
    cli.add_model(parser)
    cli.add_lora(parser)
    parser.add_argument("--precision", default="int8",
                        help="fp16, int8 or all (= fp16 and int8; default int8), or fp32: a reference build for "
                             "parity checks (not for apps), FP32 compute and fp32 I/O, written to OUT/fp32/")
    cli.add_out(parser, "output directory")
    cli.add_verbose(parser)
    cli.add_layout(parser, allow_all=True)
    fast = parser.add_argument_group("the fast layout (--layout fast or all)")
    fast.add_argument("--context", type=int, default=None,
                      help=f"positions its states hold (default {FAST_CONTEXT}, capped at what the model allows: "
                           f"voxcpm's max_length, within the RoPE tables); the published layout's is 512")
    fast.add_argument("--prefill-chunk", type=int, default=PREFILL_CHUNK,
                      help=f"positions per prefill call (default {PREFILL_CHUNK})")
    fast.add_argument("--diffusion-steps", type=int, default=INFERENCE_TIMESTEPS,
                      help=f"Euler steps baked into the diffusion package (default {INFERENCE_TIMESTEPS}, voxcpm's)")
    parser.add_argument("--force", action="store_true", help="rebuild even the artifacts that are up to date")
    cli.add_components(parser)
    parser.add_argument("--stream-decoder", action="store_true",
                        help="also convert the streaming VAE decoder (audio_vae_stream_decoder: one patch per call; "
                             "published: its contexts in and out, macOS 14, not one of the six; fast: its contexts "
                             "as Core ML states)")
    return parser


def _components(args, layouts: tuple[str, ...]) -> tuple[str, ...]:
    from contract.layout import all_names
    from contract.streaming import NAME as STREAM_DECODER

    chosen = cli.components(args.components, layouts)
    if not args.stream_decoder or STREAM_DECODER in chosen:
        return chosen
    if not any(STREAM_DECODER in all_names(layout) for layout in layouts):
        raise cli.UsageError(f"the {'/'.join(layouts)} layout has no streaming decoder: leave out --stream-decoder")
    return chosen + (STREAM_DECODER,)


def parse_settings(argv):
    from .pipeline import Settings

    args = build_parser().parse_args(argv)
    layouts = cli.layouts(args.layout, allow_all=True)
    adapter, adapter_config = cli.lora(args)
    return Settings(model=args.model, out=Path(args.out), precisions=cli.precisions(args.precision),
                    components=_components(args, layouts), revision=args.revision, force=args.force, layouts=layouts,
                    context=args.context, prefill_chunk=args.prefill_chunk, timesteps=args.diffusion_steps,
                    lora=adapter, lora_config=adapter_config)


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
