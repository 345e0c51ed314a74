"""`python -m generate`: speak a text with the converted Core ML packages (see --help).

Every expected failure is one line `error: <problem>: <fix>` and exit status 2, with nothing
written: all inputs are checked before any model runs, and the wav is written atomically.
`--stream` writes the wav as the audio is generated (a valid file at every moment; Ctrl-C keeps
what was written), `--stream -` raw 16-bit PCM to stdout, every message then on stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import sys

from contract import cli
from contract.cli import OneLineParser, UsageError
from contract.defaults import CFG_VALUE, INFERENCE_TIMESTEPS, MIN_LEN, STREAM_CONTEXT_PATCHES


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m generate",
                description="Text to 44.1 kHz speech with the Core ML packages of VoxCPM 1.5 (no torch). "
                            "Give --prompt and --prompt-text together to clone a voice.")
    p.add_argument("--text", required=True, help="what to say (English or Chinese)")
    p.add_argument("--wav", default=None, help="output file: 16-bit PCM WAV at the model rate (not needed with "
                                               "--stream -)")
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
    p.add_argument("--retry-badcase", action=argparse.BooleanOptionalAction, default=None,
                   help="generate again (up to 3 tries) when the speech runs to the length limit (default on; "
                        "off while streaming)")
    p.add_argument("--stats", default=None, help="also write the run's stats as JSON to this file")
    p.add_argument("--quiet", action="store_true", help="no summary, no progress bar")
    stream = p.add_argument_group("streaming")
    stream.add_argument("--stream", nargs="?", const="wav", default=None, metavar="-",
                        help="write the wav as the audio is generated (a valid file at every moment); '--stream -' "
                             "writes raw 16-bit little-endian mono PCM at the model rate to stdout instead (e.g. "
                             "| play -t raw -r 44100 -e signed -b 16 -c 1 -), every message on stderr")
    stream.add_argument("--stream-chunk", type=int, default=1, metavar="PATCHES",
                        help="patches per chunk (one patch = 0.16 s; default 1)")
    stream.add_argument("--stream-decoder", default="auto", choices=("auto", "windowed", "stream"),
                        help="stream: the streaming decoder package (convert --stream-decoder; equal to one whole "
                             "decode); windowed: the whole decoder re-run on the last patches with each chunk "
                             "(voxcpm's way); auto (default): stream where OUT has the package")
    stream.add_argument("--stream-context", type=int, default=STREAM_CONTEXT_PATCHES, metavar="PATCHES",
                        help=f"windowed: patches decoded again before each chunk (default {STREAM_CONTEXT_PATCHES}, "
                             f"as voxcpm; 6 or more equal one whole decode)")
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


class StreamOutputs:
    """Where a stream goes (a progressive wav, stdout), and what a Ctrl-C leaves behind."""

    def __init__(self):
        self.wav = None      # progressive_wav.ProgressiveWav once the stream starts

    def interrupted(self) -> str:
        if self.wav is None or self.wav.fd is None and self.wav.data_bytes == 0:
            return "interrupted: nothing was written"
        self.wav.close()
        return f"interrupted: {self.wav.path} holds the first {self.wav.seconds:.2f} s (a valid wav)"


def _stream(args, outputs: StreamOutputs) -> dict:
    from .audio import check_output_path
    from .progressive_wav import PcmOut, ProgressiveWav
    from .stats import summary, write_stats
    from .synthesizer import Synthesizer

    wav = check_output_path(args.wav) if args.wav else None
    if args.stats:
        check_output_path(args.stats)
    synth = Synthesizer(args.out, precision=args.precision, backend=args.backend, layout=args.layout)
    stream = synth.stream(args.text, prompt_wav=args.prompt, prompt_text=args.prompt_text, seed=args.seed,
                          cfg=args.cfg, timesteps=args.timesteps, min_len=args.min_len, max_len=args.max_len,
                          chunk_patches=args.stream_chunk, context_patches=args.stream_context,
                          decoder=args.stream_decoder, progress=not args.quiet)
    outputs.wav = ProgressiveWav(wav, stream.sample_rate) if wav else None
    pcm = PcmOut(sys.__stdout__.fileno()) if args.stream == "-" else None
    try:
        with stream:
            for chunk in stream:
                if outputs.wav is not None:
                    outputs.wav.append(chunk)
                if pcm is not None and not pcm.write(chunk):
                    print("note: stdout was closed (the player quit): generation stopped", file=sys.stderr)
                    break
    finally:  # a stop, an error or Ctrl-C: the wav keeps every whole sample written
        if outputs.wav is not None:
            outputs.wav.close()
    stats = stream.stats
    if wav:
        stats["wav"] = str(wav)
    if args.stats:
        write_stats(args.stats, stats)
    if not args.quiet:
        print(summary(stats))
    if wav:
        print(f"wav: {wav}")
    return stats


def _speak(args, outputs: StreamOutputs) -> int:
    if args.stream is None:
        _synthesize(args)
        return 0
    # raw PCM owns stdout: every message (ours and any library's) goes to stderr
    redirect = contextlib.redirect_stdout(sys.stderr) if args.stream == "-" else contextlib.nullcontext()
    with redirect:
        _stream(args, outputs)
    return 0


def _parse(argv):
    args = build_parser().parse_args(argv)
    (args.layout,) = cli.layouts(args.layout)
    if args.stream not in (None, "wav", "-"):
        raise UsageError(f"--stream takes no value, or - for raw PCM on stdout (got {args.stream!r}): give the wav "
                         f"with --wav")
    if args.wav is None and args.stream != "-":
        raise UsageError("no output: give --wav out.wav (or --stream - for raw PCM on stdout)")
    if args.stream is not None and args.retry_badcase:
        raise UsageError("--retry-badcase cannot stream (audio already played cannot be taken back): leave it out "
                         "with --stream")
    if args.stream_chunk < 1 or args.stream_context < 0:
        raise UsageError(f"--stream-chunk {args.stream_chunk} / --stream-context {args.stream_context}: need a chunk "
                         f"of at least 1 patch and a context of 0 or more")
    return args


def main(argv=None) -> int:
    from .errors import GenerationError

    outputs = StreamOutputs()
    return cli.run(argv, _parse, lambda args: _speak(args, outputs), expected=(GenerationError,),
                   interrupted=outputs.interrupted, cannot_write="free disk space or choose another path")
