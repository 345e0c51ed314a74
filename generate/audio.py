"""Audio in and out: the prompt wav (read, checked, mono, resampled) and the 16-bit output wav.

Mirrors `patches.reference.ReferencePipeline.load_prompt_audio` (channel mean, then
`patches.compat.resample_poly`); the copy here keeps generate/ free of patches/ and torch.
"""
from __future__ import annotations

import os
from math import gcd
from pathlib import Path

import numpy as np

from .errors import GenerationError


def resample_poly(audio: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Polyphase resampling along the last axis, exactly as patches.compat.resample_poly
    (up/down reduced by their gcd, computed in float64, returned as float32)."""
    from scipy.signal import resample_poly as _resample_poly

    if orig_sr == new_sr:
        return audio.astype(np.float32, copy=False)
    g = gcd(int(orig_sr), int(new_sr))
    out = _resample_poly(audio.astype(np.float64), int(new_sr) // g, int(orig_sr) // g, axis=-1)
    return out.astype(np.float32)


def read_wav(path) -> tuple[np.ndarray, int]:
    """(channels, samples) float32 and the rate; a one-line error for whatever is not usable audio."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise GenerationError(f"prompt audio {path} does not exist: give the path of a wav file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for the same problem
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GenerationError(f"cannot read prompt audio {path} ({reason}): give a wav/flac/ogg file") from None
    return np.ascontiguousarray(data.T), int(rate)


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
    """16-bit PCM, written to a hidden temporary beside `path` and renamed over it: a reader never sees
    a half-written file, and a failure leaves an existing wav untouched."""
    import soundfile as sf

    path = Path(path)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        sf.write(str(temp), np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()
    return path
