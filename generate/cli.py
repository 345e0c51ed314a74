"""`python -m generate`: speak a text with the converted Core ML packages (see --help).

Every expected failure is one line `error: <problem>: <fix>` and exit status 2, with nothing
written: all inputs are checked before any model runs, and the wav is written atomically.
"""
from __future__ import annotations

import argparse

from contract import cli
from contract.cli import OneLineParser
from contract.defaults import CFG_VALUE, INFERENCE_TIMESTEPS, MIN_LEN


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m generate",
                description="Text to 44.1 kHz speech with the Core ML packages of VoxCPM 1.5 (no torch). "
                            "Give --prompt and --prompt-text together to clone a voice.")
    p.add_argument("--text", required=True, help="what to say (English or Chinese)")
    p.add_argument("--wav", required=True, help="output file: 16-bit PCM WAV at the model rate")
    p.add_argument("--prompt", default=None, help="voice prompt audio (any rate, mono or stereo)")
    p.add_argument("--prompt-text", default=None, help="the transcript of --prompt")
    cli.add_out(p, "what python -m convert wrote", old_names=("--artifacts",))
    cli.add_verbose(p)
    cli.add_layout(p)
    p.add_argument("--precision", default="int8", choices=("int8", "fp16"), help="which packages (default int8)")
    p.add_argument("--backend", default="auto", choices=("auto", "coreml", "mil"),
                   help="coreml (macOS), mil (the numpy interpreter, any OS) or auto (default)")
    p.add_argument("--seed", type=int, default=None, help="noise seed (default: random)")
    p.add_argument("--cfg", type=float, default=CFG_VALUE,
                   help=f"classifier-free guidance scale (default {CFG_VALUE})")
    p.add_argument("--timesteps", type=int, default=INFERENCE_TIMESTEPS,
                   help=f"Euler steps per patch (default {INFERENCE_TIMESTEPS})")
    p.add_argument("--min-len", type=int, default=MIN_LEN,
                   help=f"patches before the stop head may end (default {MIN_LEN})")
    p.add_argument("--max-len", type=int, default=4096,
                   help="at most this many patches (also bounded by 6 per text token + 10, and the context)")
    p.add_argument("--retry-badcase", action=argparse.BooleanOptionalAction, default=True,
                   help="generate again (up to 3 tries) when the speech runs to the length limit (default on)")
    p.add_argument("--stats", default=None, help="also write the run's stats as JSON to this file")
    p.add_argument("--quiet", action="store_true", help="no summary, no progress bar")
    return p


def _synthesize(args) -> dict:
    from .audio import check_output_path, write_wav
    from .stats import summary, write_stats
    from .synthesizer import Synthesizer

    wav = check_output_path(args.wav)
    if args.stats:
        check_output_path(args.stats)
    synth = Synthesizer(args.out, precision=args.precision, backend=args.backend, layout=args.layout)
    audio, rate, stats = synth.synthesize(args.text, prompt_wav=args.prompt, prompt_text=args.prompt_text,
                                          seed=args.seed, cfg=args.cfg, timesteps=args.timesteps,
                                          min_len=args.min_len, max_len=args.max_len,
                                          retry_badcase=args.retry_badcase, progress=not args.quiet)
    write_wav(wav, audio, rate)
    stats["wav"] = str(wav)
    if args.stats:
        write_stats(args.stats, stats)
    if not args.quiet:
        print(summary(stats))
    print(f"wav: {wav}")
    return stats


def _speak(args) -> int:
    _synthesize(args)
    return 0


def _parse(argv):
    args = build_parser().parse_args(argv)
    (args.layout,) = cli.layouts(args.layout)
    return args


def main(argv=None) -> int:
    from .errors import GenerationError

    return cli.run(argv, _parse, _speak, expected=(GenerationError,),
                   interrupted="interrupted: nothing was written",
                   cannot_write="free disk space or choose another path")
