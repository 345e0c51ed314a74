"""The small interface the generation loop is written against: what it asks of a model, per layout and backend.

Implementations: `generate.published_steps.PublishedSteps` (the published layout's Core ML packages,
through `runtime`) and `reference.torch_steps.TorchSteps` (the patched torch modules in FP32: the
reference). A new layout is one new implementation; the loop (`generate.loop`) does not change.
Everything crosses this interface as float32 numpy arrays.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class Conditioning:
    """What the LMs say about the next patch: the diffusion conditioning and whether to stop after it."""

    mu: np.ndarray                 # [1, dit_hidden]: lm_to_dit_proj(lm hidden) + res_to_dit_proj(res hidden)
    stop_logit: np.ndarray         # [1, 2]: argmax 1 = stop after the patch sampled from this `mu`


class ModelSteps(Protocol):
    config: dict                   # the generation config (contract.generation): sizes, rates, sampler settings
    calls: Counter                 # model calls so far, by model name
    seconds: Counter               # seconds spent in them, by model name

    def describe(self) -> dict:
        """Settings worth reporting with a run (precision, backend, ...)."""

    def preload(self, has_prompt: bool) -> None:
        """Load what a run will need, so that phase times measure running, not loading."""

    def encode_prompt(self, audio: np.ndarray) -> np.ndarray:
        """[samples], a whole number of patches at the model rate -> prompt patches [n, patch, feat_dim]."""

    def prefill(self, tokens: list[int], prompt: np.ndarray) -> Conditioning:
        """Start a fresh context: the text tokens (the audio-start token last), then the prompt patches,
        at positions 0..len(tokens) + n - 1; returns what the last position says."""

    def advance(self, patch: np.ndarray, position: int) -> Conditioning:
        """Feed one generated patch [patch, feat_dim] to the LMs at `position`."""

    def sample(self, cond: Conditioning, previous: np.ndarray, noise: np.ndarray, timesteps: int,
               cfg: float) -> np.ndarray:
        """The next patch [1, feat_dim, patch] from noise [1, feat_dim, patch], the conditioning and the
        previous patch [1, feat_dim, patch] (voxcpm's sampler: sway timesteps, CFG-Zero*)."""

    def decode(self, patches: np.ndarray) -> np.ndarray:
        """Patches [n, patch, feat_dim] -> audio samples [n * patch * hop]."""

    def open_stream(self, decoder: str, context_patches: int):
        """A decoder for audio as patches come (`generate.streaming`: `prime(context)`, then
        `push(patches) -> audio`): "stream" (the streaming decoder, contexts carried), "windowed"
        (the whole decoder on the last `context_patches` patches with each chunk), "auto" (the
        streaming decoder where there is one). A mode the steps cannot do is a GenerationError."""


class OnePositionPerCall:
    """`prefill` and `advance` for steps whose LMs take one position per call (the published layout):
    the text tokens, then the prompt patches, each through `_lm_step`; FSQ and the audio embedding
    apply at audio positions only, as voxcpm's prefill applies them.

    A subclass gives `_reset()` (fresh caches), `_text_embeddings(tokens) -> [n, H]` (scaled),
    `embed_patch(patch) -> [1, H]` and `_lm_step(embed [1, H], position, is_audio) -> Conditioning`."""

    def prefill(self, tokens: list[int], prompt: np.ndarray) -> Conditioning:
        self._reset()
        text = self._text_embeddings(tokens)
        cond = None
        for position in range(len(tokens)):
            cond = self._lm_step(text[position:position + 1], position, False)
        for j in range(prompt.shape[0]):
            cond = self._lm_step(self.embed_patch(prompt[j]), len(tokens) + j, True)
        return cond

    def advance(self, patch: np.ndarray, position: int) -> Conditioning:
        return self._lm_step(self.embed_patch(patch), position, True)
