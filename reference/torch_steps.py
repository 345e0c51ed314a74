"""The FP32 reference as `ModelSteps`: the patched torch modules the packages are converted from, in FP32.

One call per model where the Core ML steps need windows or several packages (the VAE runs on the
whole signal; the projections are torch's own Linear layers), so that comparing the two isolates
what conversion and the host code do. The LM steps are the same functional-cache modules that are
traced for conversion; their caches live here between calls.
"""
from __future__ import annotations

import time
from collections import Counter

import numpy as np
import torch

from contract.generation import generation_config
from contract.layout import declare
from contract.streaming import NAME as STREAM_DECODER
from generate.errors import GenerationError
from generate.sampler import sample_patch
from generate.steps import Conditioning, OnePositionPerCall
from generate.streaming import CarriedDecoder, WindowedDecoder, frame_bytes
from patches.apply import patch_model
from patches.lm import empty_caches
from patches.modules import (AudioVAEDecoder, AudioVAEEncoder, BaseLMStep, FeatEncoder, LocDiTStep, ResidualLMStep,
                             StreamingAudioVAEDecoder)


def _np(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().numpy()


def _t(array) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


class TorchSteps(OnePositionPerCall):
    def __init__(self, model, max_context: int):
        self.model = patch_model(model)
        self.config = generation_config(model.config.model_dump(), max_context)
        self.max_context = max_context
        self.vae_encoder, self.vae_decoder = AudioVAEEncoder(model), AudioVAEDecoder(model)
        # the published declaration in FP32 (the reference's dtype): the names the stream decoders use
        self.layout = declare(model.config.model_dump(), "published", max_context, float_dtype="fp32")
        self.stream_decoder = StreamingAudioVAEDecoder(model)
        self.feat_encoder, self.locdit = FeatEncoder(model), LocDiTStep(model)
        self.base_step = BaseLMStep(model, max_context)
        self.residual_step = ResidualLMStep(model, max_context)
        self.patch_size, self.feat_dim = self.config["patch_size"], self.config["feat_dim"]
        self.text_scale = self.config["text_embedding_scale"]
        self.calls, self.seconds = Counter(), Counter()
        self.caches: list = []

    def describe(self) -> dict:
        return {"backend": "torch", "precision": "fp32 (reference)"}

    def preload(self, has_prompt: bool) -> None:
        pass

    def _run(self, name: str, module, *args):
        start = time.perf_counter()
        with torch.no_grad():
            out = module(*args)
        self.seconds[name] += time.perf_counter() - start
        self.calls[name] += 1
        return out

    # ---------------------------------------------------------------- the VAE
    def encode_prompt(self, audio: np.ndarray) -> np.ndarray:
        latent = self._run("audio_vae_encoder", self.vae_encoder, _t(audio).reshape(1, 1, -1))
        return _np(latent.view(self.feat_dim, -1, self.patch_size).permute(1, 2, 0).contiguous())

    def decode(self, patches: np.ndarray) -> np.ndarray:
        latent = _t(patches).permute(2, 0, 1).reshape(1, self.feat_dim, -1)
        return _np(self._run("audio_vae_decoder", self.vae_decoder, latent)[0, 0])

    def open_stream(self, decoder: str, context_patches: int):
        """"stream": the streaming decoder module (contexts in and out, FP32); "windowed": the whole
        decoder on the last `context_patches` patches with each chunk (voxcpm's generate_streaming)."""
        spec = self.layout[STREAM_DECODER]
        if decoder == "windowed":
            return WindowedDecoder(self.decode, context_patches, self.config["hop_length"] * self.patch_size,
                                   self.patch_size, frame_bytes(self.layout["audio_vae_decoder"]))
        if decoder not in ("auto", "stream"):
            raise GenerationError(f"unknown stream decoder {decoder!r}: use auto, windowed or stream")

        def run(inputs, state):
            args = [_t(inputs[t.name]) for t in spec.inputs]
            out = self._run(spec.name, self.stream_decoder, *args)
            return {t.name: _np(value) for t, value in zip(spec.outputs, out)}

        return CarriedDecoder(spec, run)

    # ---------------------------------------------------------------- the LMs
    def embed_patch(self, patch: np.ndarray) -> torch.Tensor:
        """[patch, feat_dim] -> LM-space embedding [1, H]."""
        encoded = self._run("feat_encoder", self.feat_encoder, _t(patch).reshape(1, 1, self.patch_size, self.feat_dim))
        with torch.no_grad():
            return self.model.enc_to_lm_proj(encoded[:, 0])

    def _lm_step(self, embed: torch.Tensor, position: int, is_audio: bool) -> Conditioning:
        base_k, base_v, res_k, res_v = self.caches
        pos = torch.tensor([position], dtype=torch.int32)
        hidden, fsq, stop_logit, *base_caches = self._run("base_lm_step", self.base_step, embed, pos, *base_k, *base_v)
        n = len(base_k)
        self.caches[0], self.caches[1] = base_caches[:n], base_caches[n:]
        lm_hidden = fsq if is_audio else hidden  # FSQ at audio positions only
        residual_in = lm_hidden + embed if is_audio else lm_hidden
        res_hidden, *res_caches = self._run("residual_lm_step", self.residual_step, residual_in, pos, *res_k, *res_v)
        m = len(res_k)
        self.caches[2], self.caches[3] = res_caches[:m], res_caches[m:]
        with torch.no_grad():
            mu = self.model.lm_to_dit_proj(lm_hidden) + self.model.res_to_dit_proj(res_hidden)
        return Conditioning(_np(mu), _np(stop_logit))

    def _reset(self) -> None:
        self.caches = [*empty_caches(self.model.base_lm, self.max_context),
                       *empty_caches(self.model.residual_lm, self.max_context)]

    @torch.no_grad()
    def _text_embeddings(self, tokens: list[int]) -> torch.Tensor:
        return self.model.base_lm.embed_tokens(torch.tensor(tokens)) * self.text_scale

    # ---------------------------------------------------------------- the sampler
    def velocity(self, x, mu, t, cond, dt) -> np.ndarray:
        """LocDiT on the CFG batch (numpy in and out); `self.locdit` may be swapped to watch the calls."""
        return _np(self._run("locdit_step", self.locdit, _t(x), _t(mu), _t(t), _t(cond), _t(dt)))

    def sample(self, cond: Conditioning, previous: np.ndarray, noise: np.ndarray, timesteps: int,
               cfg: float) -> np.ndarray:
        return sample_patch(self.velocity, cond.mu, previous, noise, timesteps, cfg,
                            self.config["cfg_zero_init_fraction"], self.config["sway_sampling_coef"])
