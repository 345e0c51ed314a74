"""Streamed audio out: a 16-bit WAV that is a valid file at every moment a reader looks, and raw PCM.

The WAV appears with its first chunk (written to a hidden sibling and renamed over the target, so
an earlier file stays intact until there is audio to replace it); every later chunk is appended
first, and only then are the header's RIFF and data sizes raised to cover it, so a reader never
finds a header that promises bytes not yet written. `close()` — after a stop, an error or Ctrl-C —
sets the sizes to the whole samples on disk. Samples become 16-bit the way soundfile writes PCM_16
(clip to [-1, 1], x 32767, round half to even), so the bytes equal `audio.write_wav`'s.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from contract.atomic import remove, sibling

HEADER_BYTES = 44           # RIFF, fmt (PCM, 16 bytes) and data chunk headers
SAMPLE_BYTES = 2            # mono 16-bit


def pcm16(audio: np.ndarray) -> bytes:
    """float32 samples -> little-endian 16-bit PCM bytes (soundfile's PCM_16 conversion)."""
    return np.rint(np.clip(np.asarray(audio, np.float64), -1.0, 1.0) * 32767).astype("<i2").tobytes()


def wav_header(sample_rate: int, data_bytes: int) -> bytes:
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, 1, sample_rate,
                       sample_rate * SAMPLE_BYTES, SAMPLE_BYTES, 16, b"data", data_bytes)


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


class ProgressiveWav:
    """`append(audio)` as chunks arrive, `close()` at the end; `seconds` of audio the file holds."""

    def __init__(self, path, sample_rate: int):
        self.path, self.sample_rate = Path(path), sample_rate
        self.fd: int | None = None
        self.data_bytes = 0

    @property
    def seconds(self) -> float:
        return self.data_bytes / SAMPLE_BYTES / self.sample_rate

    def append(self, audio: np.ndarray) -> None:
        data = pcm16(audio)
        if self.fd is None:
            self._create(data)
            return
        _write_all(self.fd, data, HEADER_BYTES + self.data_bytes)
        self.data_bytes += len(data)
        self._write_sizes()

    def _create(self, data: bytes) -> None:
        temp = sibling(self.path, "tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, wav_header(self.sample_rate, len(data)) + data, 0)
            os.replace(temp, self.path)
        except BaseException:
            os.close(fd)
            remove(temp)
            raise
        self.fd, self.data_bytes = fd, len(data)

    def _write_sizes(self) -> None:
        _write_all(self.fd, struct.pack("<I", 36 + self.data_bytes), 4)
        _write_all(self.fd, struct.pack("<I", self.data_bytes), 40)

    def close(self) -> None:
        """Sizes = the whole samples on disk (a write cut short by Ctrl-C included), then close."""
        if self.fd is None:
            return
        on_disk = os.fstat(self.fd).st_size - HEADER_BYTES
        self.data_bytes = on_disk - on_disk % SAMPLE_BYTES
        os.ftruncate(self.fd, HEADER_BYTES + self.data_bytes)
        self._write_sizes()
        os.close(self.fd)
        self.fd = None


class PcmOut:
    """Raw 16-bit little-endian mono PCM to a file descriptor (stdout), unbuffered.

    `write` returns False once the reader has gone (a player quit: broken pipe); from then on the
    descriptor points at /dev/null, so nothing at exit tries to write to the closed pipe again."""

    def __init__(self, fd: int = 1):
        self.fd, self.open, self.bytes = fd, True, 0

    def write(self, audio: np.ndarray) -> bool:
        if not self.open:
            return False
        data = pcm16(audio)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except BrokenPipeError:
            self.open = False
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self.fd)
            os.close(null)
            return False
        self.bytes += len(data)
        return True
