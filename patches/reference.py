"""The FP32 PyTorch reference generator, step by step through the patched components.

It follows voxcpm 2.0.3's VoxCPM 1.5 path (`VoxCPM.generate` -> `_generate_with_prompt_cache`
-> `_inference`) one model call at a time, as a Core ML app must, so that other backends can be
compared with it step by step. Noise is injectable; by default it is drawn with torch's global
generator in voxcpm's order, so that the same seed gives the same speech as voxcpm itself.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .apply import patch_model
from .compat import read_audio, resample_poly
from .components import DEFAULT_MAX_CONTEXT, AudioVAEDecoder, AudioVAEEncoder, BaseLMStep, FeatEncoder, \
    LocDiTStep, ResidualLMStep
from .lm import empty_caches
from .mup import embedding_scale

AUDIO_START_TOKEN = 101
PROMPT_CONTEXT_PATCHES = 2  # voxcpm decodes the last prompt patches before the generated ones
CFG_ZERO_INIT_FRACTION = 0.04


class GenerationError(ValueError):
    """Input that cannot be generated from; one line naming the problem and the fix."""


def prepare_text(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\n", " "))


def sway_timesteps(steps: int, coef: float = 1.0) -> torch.Tensor:
    t = torch.linspace(1, 0, steps + 1, dtype=torch.float32)
    return t + coef * (torch.cos(torch.pi / 2 * t) - 1 + t)


@dataclass
class GenerationResult:
    audio: np.ndarray              # [samples] float32 at `sample_rate`
    sample_rate: int
    latents: np.ndarray            # [n_generated, patch, feat_dim]
    retries: int = 0
    prefill_length: int = 0
    steps: list = field(default_factory=list)  # per generated patch: mu, noise, patch, stop_logit


class ReferencePipeline:
    def __init__(self, model, max_context: int = DEFAULT_MAX_CONTEXT):
        self.model = patch_model(model)
        self.max_context = max_context
        self.patch_size = model.patch_size
        self.feat_dim = model.feat_dim
        self.sample_rate = model.sample_rate
        self.patch_samples = model.patch_size * model.chunk_size
        self.vae_encoder, self.vae_decoder = AudioVAEEncoder(model), AudioVAEDecoder(model)
        self.feat_encoder, self.locdit = FeatEncoder(model), LocDiTStep(model)
        self.base_step = BaseLMStep(model, max_context)
        self.residual_step = ResidualLMStep(model, max_context)
        self.tokenizer = model.text_tokenizer
        self.text_scale = embedding_scale(model.config.lm_config)

    # ---------------------------------------------------------------- inputs
    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text))

    def load_prompt_audio(self, path) -> np.ndarray:
        audio, sr = read_audio(path)
        mono = audio.mean(axis=0, keepdims=True)
        return resample_poly(mono, sr, self.sample_rate)

    @torch.no_grad()
    def encode_prompt(self, audio: np.ndarray) -> torch.Tensor:
        """[1, samples] at the model rate -> prompt patches [n, patch, feat_dim] (left-padded)."""
        audio = torch.from_numpy(np.asarray(audio, dtype=np.float32)).reshape(1, 1, -1)
        pad = (-audio.shape[-1]) % self.patch_samples
        audio = torch.nn.functional.pad(audio, (pad, 0))
        latent = self.vae_encoder(audio)
        return latent.view(self.feat_dim, -1, self.patch_size).permute(1, 2, 0).contiguous()

    @torch.no_grad()
    def embed_patch(self, patch: torch.Tensor) -> torch.Tensor:
        """[patch, feat_dim] -> LM-space embedding [1, H]."""
        return self.model.enc_to_lm_proj(self.feat_encoder(patch.reshape(1, 1, self.patch_size, self.feat_dim))[:, 0])

    # ---------------------------------------------------------------- sampler
    @torch.no_grad()
    def sample_patch(self, mu, cond, noise, timesteps: int, cfg: float) -> torch.Tensor:
        """Euler over sway-warped time with CFG-Zero*; cond/noise [1, feat_dim, patch]."""
        t_span = sway_timesteps(timesteps)
        x, t, dt = noise, t_span[0], t_span[0] - t_span[1]
        zero_init_steps = max(1, int(len(t_span) * CFG_ZERO_INIT_FRACTION))
        for step in range(1, len(t_span)):
            if step <= zero_init_steps:
                velocity = torch.zeros_like(x)
            else:
                out = self.locdit(torch.cat([x, x]), torch.cat([mu, torch.zeros_like(mu)]), t.repeat(2),
                                  torch.cat([cond, cond]), torch.zeros(2))
                cond_v, uncond_v = out[:1], out[1:]
                scale = (cond_v * uncond_v).sum() / ((uncond_v ** 2).sum() + 1e-8)
                velocity = uncond_v * scale + cfg * (cond_v - uncond_v * scale)
            x = x - dt * velocity
            t = t - dt
            if step < len(t_span) - 1:
                dt = t - t_span[step + 1]
        return x

    # ---------------------------------------------------------------- LM
    def _lm_step(self, embed, position, caches, is_audio: bool):
        base_k, base_v, res_k, res_v = caches
        pos = torch.tensor([position], dtype=torch.int32)
        hidden, fsq, stop_logit, *base_caches = self.base_step(embed, pos, *base_k, *base_v)
        n = len(base_k)
        caches[0], caches[1] = base_caches[:n], base_caches[n:]
        lm_hidden = fsq if is_audio else hidden
        residual_in = lm_hidden + embed if is_audio else lm_hidden
        res_hidden, *res_caches = self.residual_step(residual_in, pos, *res_k, *res_v)
        m = len(res_k)
        caches[2], caches[3] = res_caches[:m], res_caches[m:]
        return lm_hidden, res_hidden, stop_logit

    def _new_caches(self):
        return [*empty_caches(self.model.base_lm, self.max_context),
                *empty_caches(self.model.residual_lm, self.max_context)]

    @torch.no_grad()
    def _prefill(self, tokens: list[int], prompt: torch.Tensor, caches):
        text_embeds = self.model.base_lm.embed_tokens(torch.tensor(tokens)) * self.text_scale
        lm_hidden = res_hidden = stop_logit = None
        for position in range(len(tokens)):
            lm_hidden, res_hidden, stop_logit = self._lm_step(text_embeds[position:position + 1], position, caches, False)
        for j in range(prompt.shape[0]):
            lm_hidden, res_hidden, stop_logit = self._lm_step(self.embed_patch(prompt[j]), len(tokens) + j, caches, True)
        return lm_hidden, res_hidden, stop_logit

    @torch.no_grad()
    def _inference(self, tokens, prompt, min_len, max_len, timesteps, cfg, noise, record):
        caches = self._new_caches()
        lm_hidden, res_hidden, stop_logit = self._prefill(tokens, prompt, caches)
        position = len(tokens) + prompt.shape[0]
        cond = prompt[-1].T.unsqueeze(0) if prompt.shape[0] else torch.zeros(1, self.feat_dim, self.patch_size)
        patches, steps = [], []
        for i in range(max_len):
            mu = self.model.lm_to_dit_proj(lm_hidden) + self.model.res_to_dit_proj(res_hidden)
            z = noise()
            patch = self.sample_patch(mu, cond, z, timesteps, cfg)  # [1, feat_dim, patch]
            patches.append(patch[0].T)
            if record:
                steps.append({"mu": mu.numpy().copy(), "noise": z.numpy().copy(), "patch": patch.numpy().copy(),
                              "stop_logit": stop_logit.numpy().copy(), "position": position})
            cond = patch
            if i > min_len and int(stop_logit.argmax(-1)[0]) == 1 or i == max_len - 1:
                break  # (voxcpm also runs the LM on the last patch; nothing reads the result)
            embed = self.embed_patch(patch[0].T)
            lm_hidden, res_hidden, stop_logit = self._lm_step(embed, position, caches, True)
            position += 1
        return torch.stack(patches), steps

    # ---------------------------------------------------------------- public
    def fit_context(self, prefill: int, min_len: int, max_len: int) -> int:
        """max_len bounded by the cache: every generated patch but the last takes a position.

        Text and prompt that leave no room for min_len + 2 patches (the shortest run the stop
        rule allows) are an error that says by how much to shorten them.
        """
        shortest = prefill + min_len + 1
        if shortest > self.max_context:
            raise GenerationError(f"text and prompt take {prefill} positions and the shortest generation "
                                  f"{min_len + 1} more, but the context holds {self.max_context}: shorten the "
                                  f"text or prompt by {shortest - self.max_context} positions")
        return min(max_len, self.max_context - prefill + 1)

    @torch.no_grad()
    def generate(self, text: str, prompt_wav=None, prompt_text: str | None = None, *, min_len: int = 2,
                 max_len: int = 4096, timesteps: int = 10, cfg: float = 2.0, retry_badcase: bool = False,
                 retry_max: int = 3, ratio: float = 6.0, noise: Callable[[], torch.Tensor] | None = None,
                 prompt_audio: np.ndarray | None = None, record: bool = False) -> GenerationResult:
        """Speech for `text`, optionally continuing a voice prompt (wav path or audio + its text)."""
        text = prepare_text(text)
        if not text.strip():
            raise GenerationError("the text is empty: give something to say")
        has_prompt = prompt_wav is not None or prompt_audio is not None
        if has_prompt != (prompt_text is not None):
            raise GenerationError("prompt audio and prompt text go together: give both or neither")
        if prompt_wav is not None:
            prompt_audio = self.load_prompt_audio(prompt_wav)
        prompt = self.encode_prompt(prompt_audio) if has_prompt else torch.zeros(0, self.patch_size, self.feat_dim)
        tokens = self.tokenize((prepare_text(prompt_text) if has_prompt else "") + text) + [AUDIO_START_TOKEN]
        target_length = len(self.tokenize(text))
        max_len = min(int(target_length * ratio + 10), max_len)
        max_len = self.fit_context(len(tokens) + prompt.shape[0], min_len, max_len)
        noise = noise or (lambda: torch.randn(1, self.feat_dim, self.patch_size))
        context = prompt[-min(PROMPT_CONTEXT_PATCHES, prompt.shape[0]):] if prompt.shape[0] else prompt
        for attempt in range(retry_max):
            latents, steps = self._inference(tokens, prompt, min_len, max_len, timesteps, cfg, noise, record)
            if not (retry_badcase and latents.shape[0] + context.shape[0] >= target_length * ratio):
                break
        audio = self.decode(torch.cat([context, latents]))[context.shape[0] * self.patch_samples:]
        return GenerationResult(audio=audio, sample_rate=self.sample_rate, latents=latents.numpy(),
                                retries=attempt, prefill_length=len(tokens) + prompt.shape[0], steps=steps)

    @torch.no_grad()
    def decode(self, patches: torch.Tensor) -> np.ndarray:
        """[n, patch, feat_dim] -> audio samples."""
        latent = patches.permute(2, 0, 1).reshape(1, self.feat_dim, -1)
        return self.vae_decoder(latent)[0, 0].numpy()
