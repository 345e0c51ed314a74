"""Audio while the patches are still being generated: the two ways to decode a stream, and the stream itself.

Both decoders start from the context the whole-utterance decode uses (a voice prompt's last
patches, their audio dropped) and turn each chunk of generated patches into its audio:
- `WindowedDecoder`, with the whole-decoder package: each chunk is decoded together with the
  `context` patches before it and only its own samples are kept — voxcpm 1.x `generate_streaming`
  (context 2, chunk 1: 3 patches decoded for every new one). An output frame reads 21 latent
  frames back (generate/vae.py), so with fewer than 6 context patches the chunks differ slightly
  from one whole decode; with 6 or more they equal it.
- `CarriedDecoder`, with the streaming decoder package (`contract.streaming`): one call per patch,
  every causal convolution's context carried to the next call (outputs fed back as inputs on
  macOS 14, Core ML states on macOS 15): equal to one whole decode, no patch decoded twice.
"""
from __future__ import annotations

import math
import time
from statistics import median

import numpy as np

from contract.components import STREAM_STEP

from .errors import GenerationError

DECODERS = ("auto", "windowed", "stream")   # auto: the streaming decoder where the OUT has it, else windowed
BYTES = {"fp16": 2, "fp32": 4, "int32": 4}


def interface_bytes(tensors) -> int:
    """Bytes of these declared tensors (their declared shapes and dtypes)."""
    return sum(math.prod(t.shape) * BYTES[t.dtype] for t in tensors)


def frame_bytes(whole_decoder) -> int:
    """Bytes through the whole decoder's interface per latent frame (latent in, audio out)."""
    frames = whole_decoder.inputs[0].shape[-1]   # the declared default length; audio is frames * hop
    return interface_bytes(whole_decoder.inputs + whole_decoder.outputs) // frames


class WindowedDecoder:
    """Re-decode the last `context` patches with every chunk; keep the chunk's own samples.

    `decode(patches [n, P, D]) -> audio [n * patch_samples]`; `frame_bytes`: bytes through the
    decoder's interface per latent frame (latent in, audio out)."""

    kind = "windowed"

    def __init__(self, decode, context: int, patch_samples: int, patch_size: int, frame_bytes: int):
        if context < 0:
            raise ValueError(f"context_patches {context}: need 0 or more")
        self.decode, self.context, self.patch_samples = decode, context, patch_samples
        self.patch_size, self.frame_bytes = patch_size, frame_bytes
        self.history = None
        self.calls = self.bytes = 0

    def describe(self) -> dict:
        return {"decoder": self.kind, "context_patches": self.context}

    def prime(self, context: np.ndarray) -> None:
        """The patches before the first generated one (the prompt's context): decoded with it, not played."""
        self.history = np.asarray(context, np.float32)[max(0, len(context) - self.context):]

    def push(self, patches: np.ndarray) -> np.ndarray:
        window = np.concatenate([self.history, patches]) if self.history is not None else patches
        audio = self.decode(window)[-len(patches) * self.patch_samples:]
        self.history = window[len(window) - min(self.context, len(window)):]
        self.calls += 1
        self.bytes += len(window) * self.patch_size * self.frame_bytes
        return audio


class CarriedDecoder:
    """The streaming decoder: one call per patch, its contexts carried (declared by `spec`, a stream step).

    `run(inputs, state) -> outputs` calls the package by its declared names; `new_state()` makes a
    fresh Core ML state (stateful form only)."""

    def __init__(self, spec, run, new_state=None):
        self.spec, self.run, self.carried = spec, run, spec.carried
        self.kind = "stream (states)" if self.carried.stateful else "stream (contexts in and out)"
        self.latent = spec.inputs[0]
        self.state = new_state() if self.carried.stateful else None
        self.contexts = {} if self.carried.stateful else {
            t.name: np.zeros(t.shape, np.float32) for t in self.carried.tensors}
        # per call: latent in, audio out, and (explicit form) every context in and out again
        self.call_bytes = interface_bytes([t for t in spec.inputs + spec.outputs])
        self.calls = self.bytes = 0

    def describe(self) -> dict:
        return {"decoder": self.kind}

    def _call(self, patch: np.ndarray) -> np.ndarray:
        latent = patch.T.reshape(self.latent.shape).astype(np.float32)
        out = self.run({self.latent.name: latent, **self.contexts}, self.state)
        if not self.carried.stateful:
            self.contexts = {name: out[self.carried.output_for(name)] for name in self.contexts}
        self.calls += 1
        self.bytes += self.call_bytes
        return out[self.spec.primary_output].reshape(-1)

    def prime(self, context: np.ndarray) -> None:
        for patch in context:
            self._call(patch)

    def push(self, patches: np.ndarray) -> np.ndarray:
        return np.concatenate([self._call(patch) for patch in patches])


def open_package_stream(layout, packages, decode, decoder: str, context_patches: int, patch_size: int, hop: int,
                        precision: str):
    """The decoder of a stream over a layout's Core ML packages (`generate.packages.Packages`): the layout's
    stream step where OUT has it (either form: contexts in and out, or states) unless "windowed" is asked
    for, else the whole decoder windowed (`decode(patches) -> audio`). Any layout's steps can return it."""
    stream = next((s for s in layout.of_kind(STREAM_STEP) if s.name in packages.paths), None)
    if decoder == "stream" and stream is None:
        where = packages.paths["audio_vae_decoder"].parent
        raise GenerationError(f"{where} has no streaming decoder package: convert it (python -m convert "
                              f"--stream-decoder --precision {precision}) or stream with the windowed decoder")
    if decoder != "windowed" and stream is not None:
        return CarriedDecoder(stream, lambda inputs, state: packages(stream.name, state=state, **inputs),
                              lambda: packages.new_state(stream.name))
    whole = layout["audio_vae_decoder"]
    return WindowedDecoder(decode, context_patches, patch_size * hop, patch_size, frame_bytes(whole))


class AudioStream:
    """Float32 audio chunks [samples] at `sample_rate`, yielded as the patches are generated.

    Iterate it; `stats` is complete once it ends — by the stop head, the length limit, or `close()`
    (which stops the generation cleanly after the current patch; a `with` block closes it too)."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.stats: dict = {}
        self._chunks = iter(())

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        return next(self._chunks)

    def close(self) -> None:
        self._chunks.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ChunkClock:
    """When each chunk was ready, counting only the producer's time (not the caller's between chunks)."""

    def __init__(self, started: float, load_seconds: float):
        self.started, self.load_seconds = started, load_seconds
        self.first = None
        self.intervals: list[float] = []
        self._resumed = None

    def ready(self) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now - self.started - self.load_seconds
        else:
            self.intervals.append(now - self._resumed)

    def resumed(self) -> None:
        self._resumed = time.perf_counter()

    def summary(self) -> dict:
        gaps = self.intervals
        return {"time_to_first_audio_s": None if self.first is None else round(self.first, 3),
                "chunk_interval_s": {"median": round(median(gaps), 3), "mean": round(sum(gaps) / len(gaps), 3),
                                     "max": round(max(gaps), 3)} if gaps else None}
