"""Per-run measurements: speeds, real-time factor, peak memory, model calls per generated patch."""
from __future__ import annotations

import resource
import sys
import time
from contextlib import contextmanager

from contract.atomic import write_json_atomically


def peak_rss_mib() -> float:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


class Timer:
    """Named phase durations: `with timer("prefill"): ...`."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start


def _rate(count: float, seconds: float) -> float | None:
    return round(count / seconds, 3) if seconds > 0 else None


def build_stats(*, timer: Timer, run_calls: dict, run_seconds: dict, generation_calls: dict,
                prefill_positions: int, generated: int, audio_seconds: float, settings: dict) -> dict:
    """The stats dict `Synthesizer.synthesize` returns (and `--stats` writes).

    Times exclude loading the packages (a one-off cost, reported as seconds.load): the real-time
    factor is synthesis time / audio time. Calls per patch count the generation loop only."""
    total = sum(s for phase, s in timer.seconds.items() if phase != "load")
    return {
        **settings,
        "prefill_positions": prefill_positions,
        "generated_patches": generated,  # over every try of the bad-case retry
        "audio_seconds": round(audio_seconds, 3),
        "seconds": {phase: round(s, 3) for phase, s in timer.seconds.items()} | {"total": round(total, 3)},
        "prefill_tokens_per_second": _rate(prefill_positions, timer.seconds.get("prefill", 0.0)),
        "generation_steps_per_second": _rate(generated, timer.seconds.get("generate", 0.0)),
        "real_time_factor": round(total / audio_seconds, 3) if audio_seconds > 0 else None,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "model_calls": dict(run_calls),
        "model_seconds": {name: round(s, 3) for name, s in run_seconds.items()},
        "calls_per_generated_patch": {name: round(n / generated, 3) for name, n in generation_calls.items()
                                      if generated and n},
    }


def summary(stats: dict) -> str:
    """A few lines for the terminal."""
    calls = ", ".join(f"{name} {n:g}" for name, n in stats["calls_per_generated_patch"].items())
    speed = stats["generation_steps_per_second"]
    prefill = stats["prefill_tokens_per_second"]
    tries = f", {stats['retries'] + 1} tries: {stats['generated_patches']} generated" if stats["retries"] else ""
    total = stats["seconds"]["total"]
    lines = [
        f"audio {stats['audio_seconds']:.2f} s ({stats['patches']} patches{tries}) in {total:.2f} s: "
        f"real-time factor {stats['real_time_factor']}",
        f"prefill {stats['prefill_positions']} positions at {prefill} tokens/s; generation {speed} patches/s; "
        f"peak RSS {stats['peak_rss_mib']:.0f} MiB",
        f"model calls per generated patch: {calls or 'none'}",
    ]
    if "stream" in stats:
        lines.append(stream_summary(stats["stream"], stats["seconds"].get("load", 0.0)))
    return "\n".join(lines)


def stream_summary(stream: dict, load_seconds: float) -> str:
    """Time to first audio, chunks and their interval, and what the decoder cost per patch."""
    interval = stream.get("chunk_interval_s")
    every = f" every {interval['median']:.3f} s (median; max {interval['max']:.3f} s)" if interval else ""
    first = stream.get("time_to_first_audio_s")
    first_text = "no audio" if first is None else (
        f"first audio after {first:.3f} s ({stream['first_audio_patches']} patch"
        f"{'es' if stream['first_audio_patches'] != 1 else ''}; loading the packages took {load_seconds:.2f} s more)")
    decoder = stream["decoder"] + (f", {stream['context_patches']} context patches" if "context_patches" in stream
                                   else "")
    return (f"streamed: {first_text}, {stream['chunks']} chunks of {stream['chunk_patches']} patch(es){every}; "
            f"decoder {decoder}: {stream['decoder_calls_per_patch']} calls and "
            f"{(stream['decoder_bytes_per_patch'] or 0) / 1024:.1f} KiB per patch; ended by {stream['ended']}")


def write_stats(path, stats: dict) -> None:
    write_json_atomically(path, stats)
