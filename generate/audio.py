"""Audio in and out: the prompt wav (read, checked, mono, resampled) and the 16-bit output wav.

Reading and resampling are `contract.audio`'s; the reference generator runs the same code.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from contract.audio import read_audio, resample_poly
from contract.atomic import write_atomically

from .errors import GenerationError


def read_wav(path) -> tuple[np.ndarray, int]:
    """(channels, samples) float32 and the rate; a one-line error for whatever is not usable audio."""
    path = Path(path)
    if not path.is_file():
        raise GenerationError(f"prompt audio {path} does not exist: give the path of a wav file")
    try:
        return read_audio(path)
    except ValueError as exc:
        reason = str(exc).split(": ", 1)[-1]
        raise GenerationError(f"cannot read prompt audio {path} ({reason}): give a wav/flac/ogg file") from None


def check_prompt(audio: np.ndarray, path) -> None:
    """Empty, silent or non-finite prompts would condition the model on nothing (or NaN)."""
    if audio.shape[-1] == 0:
        raise GenerationError(f"prompt audio {path} has no samples: give a recording of the prompt text")
    if not np.isfinite(audio).all():
        raise GenerationError(f"prompt audio {path} contains NaN or infinite samples: give a clean recording")
    if not np.any(audio):
        raise GenerationError(f"prompt audio {path} is silent (all zeros): give a recording of the prompt text")


def load_prompt(path, sample_rate: int) -> np.ndarray:
    """[1, samples] float32 at the model rate: channel mean, then resampling (the reference's order)."""
    audio, rate = read_wav(path)
    check_prompt(audio, path)
    mono = audio.mean(axis=0, keepdims=True)
    return resample_poly(mono, rate, sample_rate)


def check_output_path(path) -> Path:
    """Fail before any model work if the wav cannot be written there."""
    path = Path(path)
    if path.is_dir():
        raise GenerationError(f"output {path} is a directory: give a file name such as out.wav")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise GenerationError(f"output directory {parent} does not exist: create it or choose another --wav")
    if not os.access(parent, os.W_OK):
        raise GenerationError(f"output directory {parent} is not writable: choose another --wav")
    return path


def write_wav(path, audio: np.ndarray, sample_rate: int) -> Path:
    """16-bit PCM, written atomically: a reader never sees a half-written file, and a failure leaves an
    existing wav untouched."""
    import soundfile as sf

    return write_atomically(path, lambda temp: sf.write(str(temp), np.clip(audio, -1.0, 1.0), sample_rate,
                                                       subtype="PCM_16", format="WAV"))
