"""Audio files in, and resampling, exactly one way: the reference, the generator and validation must agree.

A voice prompt is read with soundfile (channels first, float32) and resampled with scipy's
polyphase filter (up/down reduced by their gcd, computed in float64, returned as float32). numpy
and scipy only: the torch-free generator uses it too.
"""
from __future__ import annotations

from math import gcd

import numpy as np


def read_audio(path) -> tuple[np.ndarray, int]:
    """(channels, samples) float32 and the sample rate; ValueError for what is not audio."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for the same problem
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"cannot read audio file {path}: {reason}") from None
    return np.ascontiguousarray(data.T), int(rate)


def resample_poly(audio: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Band-limited polyphase resampling along the last axis (Kaiser-windowed FIR)."""
    from scipy.signal import resample_poly as _resample_poly

    if orig_sr == new_sr:
        return audio.astype(np.float32, copy=False)
    g = gcd(int(orig_sr), int(new_sr))
    out = _resample_poly(audio.astype(np.float64), int(new_sr) // g, int(orig_sr) // g, axis=-1)
    return out.astype(np.float32)
