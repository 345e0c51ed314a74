"""Prompt encoding in fixed 5 s windows and decoding in chunks, both equal to one whole-signal call.

The AudioVAE is causal: every conv pads on the left only (voxcpm `CausalConv1d`), and
`CausalTransposeConv1d` trims its right end. So
- zeros appended on the RIGHT change no earlier output: a short prompt goes at the START of the
  encoder's fixed window, and we keep its first frames. (Zeros on the left would not be the
  same as the convs' own padding: biases make a zero input give non-zero activations.)
- an output frame depends on a bounded stretch of input before it (the receptive field), so a
  window that starts `context` frames early reproduces the whole-signal frames after that
  context exactly. Windows overlap by `context` frames; each keeps only its new frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# voxcpm's CausalResidualUnit: kernel 7 at dilations 1, 3, 9 -> (7 - 1) * (1 + 3 + 9) samples of left reach
_RESIDUAL_REACH = 6 * (1 + 3 + 9)
_IN_OUT_CONV_REACH = 6   # the 7-tap first/last convs
_MU_CONV_REACH = 2       # the encoder's 3-tap fc_mu


def encoder_context_frames(rates: list[int]) -> int:
    """Latent frames of left context after which window-by-window encoding equals whole-signal encoding.

    Walk back from latent frame j to the earliest input sample it reads, through voxcpm's
    CausalEncoder: 7-tap conv; per rate s: 3 residual units, then a conv of kernel 2s, stride s,
    left pad 2*ceil(s/2); then the 3-tap fc_mu. For 44.1 kHz rates [2, 3, 6, 7, 7]: 29 050 samples,
    17 frames of 1764 (measured with the torch reference: 16 frames differ by 1.6e-4, 17 by 2e-6).
    """
    hop = int(np.prod(rates))
    j = 1000                                   # any frame far from the start
    earliest = j - _MU_CONV_REACH
    for s in reversed(rates):
        earliest = earliest * s - 2 * -(-s // 2) - _RESIDUAL_REACH
    earliest -= _IN_OUT_CONV_REACH
    return -(-(j * hop - earliest) // hop)


def decoder_context_frames(rates: list[int]) -> int:
    """Latent frames of left context after which chunked decoding equals whole decoding.

    Walk back from the first sample of frame j through voxcpm's CausalDecoder: 7-tap last conv;
    per rate s (last first): 3 residual units, then a transposed conv of kernel 2s, stride s (output
    t reads inputs ceil((t - 2s + 1) / s) .. t // s); then the 7-tap first conv. For rates
    [7, 7, 6, 3, 2]: 21 frames (measured in float64: 20 frames differ by 7e-6, 21 by 0).
    """
    hop = int(np.prod(rates))
    j = 1000
    t = j * hop - _IN_OUT_CONV_REACH
    for s in reversed(rates):
        t = -(-(t - _RESIDUAL_REACH - 2 * s + 1) // s)
    return j - (t - _IN_OUT_CONV_REACH)


@dataclass(frozen=True)
class Window:
    start: int       # first frame the window holds (context included)
    keep: int        # first frame it contributes
    end: int         # one past its last contributed frame


def plan_windows(total: int, window: int, context: int) -> list[Window]:
    """Cover frames [0, total) with windows of <= `window` frames; each after the first starts
    `context` frames before its first kept frame. The first needs no context: frame 0 has none."""
    if window <= context:
        raise ValueError(f"a window of {window} frames cannot hold {context} frames of context")
    plan, keep = [], 0
    while keep < total:
        start = max(0, keep - context)
        end = min(start + window, total)
        plan.append(Window(start, keep, end))
        keep = end
    return plan


def encode_audio(run, audio: np.ndarray, hop: int, window_frames: int, context: int) -> np.ndarray:
    """[samples] (a multiple of hop) -> latent [latent_dim, frames] through a fixed-window encoder.

    `run(window_samples [1, 1, window_frames * hop]) -> latent [1, latent_dim, window_frames]`.
    A window that runs past the end of the audio is filled with zeros on the right (no effect)."""
    total = audio.shape[-1] // hop
    parts = []
    for w in plan_windows(total, window_frames, context):
        chunk = np.zeros(window_frames * hop, np.float32)
        piece = audio[w.start * hop:min(w.start + window_frames, total) * hop]
        chunk[:piece.size] = piece
        latent = run(chunk.reshape(1, 1, -1))
        parts.append(latent[0, :, w.keep - w.start:w.end - w.start])
    return np.concatenate(parts, axis=-1)


def decode_latent(run, latent: np.ndarray, hop: int, max_frames: int, context: int) -> np.ndarray:
    """latent [latent_dim, frames] -> audio [frames * hop] through a decoder of <= max_frames frames.

    `run(latent [1, latent_dim, n]) -> audio [1, 1, n * hop]`."""
    total = latent.shape[-1]
    parts = []
    for w in plan_windows(total, max_frames, context):
        audio = run(latent[None, :, w.start:w.end]).reshape(-1)
        parts.append(audio[(w.keep - w.start) * hop:])
    return np.concatenate(parts)
