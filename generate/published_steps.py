"""The published layout's packages as `ModelSteps`: six Core ML models, the small projections in numpy.

Per generated patch: feat_encoder + enc_to_lm_proj, base_lm_step, residual_lm_step, then the
sampler's 9 locdit_step calls (13 calls with the published sampler, 12 with voxcpm's). The LM
steps' KV caches go in and out of every call under the names their declaration gives. The VAE
runs in fixed windows (encoder) and chunks (decoder) that reproduce one whole-signal call. A stream
decodes with the optional streaming decoder package where OUT has it, else windowed with the whole
decoder (`generate.streaming`).
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from contract.components import LM_STEP
from contract.layout import Layout

from .packages import Packages
from .sampler import sample_patch
from .steps import Conditioning, OnePositionPerCall
from .streaming import open_package_stream
from .vae import decode_latent, decoder_context_frames, encode_audio, encoder_context_frames


class PublishedSteps(OnePositionPerCall):
    def __init__(self, packages: Packages, constants: dict, config: dict, layout: Layout, precision: str,
                 vae_rates: tuple[list[int], list[int]]):
        self.packages, self.constants, self.config, self.layout = packages, constants, config, layout
        self.precision = precision
        self.base, self.residual = layout["base_lm_step"], layout["residual_lm_step"]
        self.encoder_context = encoder_context_frames(vae_rates[0])
        self.decoder_context = decoder_context_frames(vae_rates[1])
        self.patch_size, self.feat_dim, self.hop = config["patch_size"], config["feat_dim"], config["hop_length"]
        self.text_scale = np.float32(config["text_embedding_scale"])
        self.caches: dict = {}

    @property
    def calls(self) -> Counter:
        return self.packages.calls

    @property
    def seconds(self) -> Counter:
        return self.packages.seconds

    def describe(self) -> dict:
        settings = {"layout": self.layout.name, "precision": self.precision, "backend": self.packages.backend}
        if self.packages.backend == "mil":
            settings["compute"] = self.packages.compute
        return settings

    def preload(self, has_prompt: bool) -> None:
        for name in self.layout.names:
            if name in self.packages.paths and (has_prompt or name != "audio_vae_encoder"):
                self.packages.load(name)

    # ---------------------------------------------------------------- the VAE
    def encode_prompt(self, audio: np.ndarray) -> np.ndarray:
        spec = self.layout["audio_vae_encoder"]
        window = spec.inputs[0].shape[-1] // self.hop
        run = lambda a: self.packages(spec.name, **{spec.inputs[0].name: a})[spec.primary_output]  # noqa: E731
        latent = encode_audio(run, audio, self.hop, window, self.encoder_context)
        return latent.reshape(self.feat_dim, -1, self.patch_size).transpose(1, 2, 0).copy()

    def decode(self, patches: np.ndarray) -> np.ndarray:
        spec = self.layout["audio_vae_decoder"]
        latent = patches.transpose(2, 0, 1).reshape(self.feat_dim, -1)
        run = lambda z: self.packages(spec.name, **{spec.inputs[0].name: z})[spec.primary_output]  # noqa: E731
        return decode_latent(run, latent, self.hop, spec.inputs[0].flexible[2][1], self.decoder_context)

    def open_stream(self, decoder: str, context_patches: int):
        return open_package_stream(self.layout, self.packages, self.decode, decoder, context_patches, self.patch_size,
                                   self.hop, self.precision)

    # ---------------------------------------------------------------- the LMs
    def _linear(self, name: str, x: np.ndarray) -> np.ndarray:
        """torch.nn.Linear with the weights in OUT/constants ([out, in] layout)."""
        return (x @ self.constants[f"{name}_w"].T + self.constants[f"{name}_b"]).astype(np.float32)

    def embed_patch(self, patch: np.ndarray) -> np.ndarray:
        """[patch, feat_dim] -> LM-space embedding [1, H] (feat_encoder, then enc_to_lm_proj in numpy)."""
        spec = self.layout["feat_encoder"]
        feat = patch.reshape(spec.inputs[0].shape)
        encoded = self.packages(spec.name, **{spec.inputs[0].name: feat})[spec.primary_output][:, 0]
        return self._linear("enc_to_lm_proj", encoded)

    def _step(self, spec, embed: np.ndarray, position: int) -> dict:
        """One LM step at `position`; its caches are replaced by the step's outputs."""
        out = self.packages(spec.name, **{spec.embed_input: embed,
                                          spec.position_input: np.array([position], np.int32)},
                            **self.caches[spec.name])
        self.caches[spec.name] = {name: out[spec.caches.output_for(name)] for name in spec.caches.input_names()}
        return out

    def _lm_step(self, embed: np.ndarray, position: int, is_audio: bool) -> Conditioning:
        base = self._step(self.base, embed, position)
        lm_hidden = base["lm_hidden_fsq"] if is_audio else base["lm_hidden"]  # FSQ at audio positions only
        residual_in = lm_hidden + embed if is_audio else lm_hidden
        res_hidden = self._step(self.residual, residual_in, position)["res_hidden"]
        mu = self._linear("lm_to_dit_proj", lm_hidden) + self._linear("res_to_dit_proj", res_hidden)
        return Conditioning(mu.astype(np.float32), base["stop_logit"])

    def _reset(self) -> None:
        self.caches = {spec.name: {name: np.zeros(spec.caches.shape, np.float32) for name in spec.caches.input_names()}
                       for spec in self.layout.of_kind(LM_STEP)}

    def _text_embeddings(self, tokens: list[int]) -> np.ndarray:
        return np.asarray(self.constants["embed_tokens"][tokens], dtype=np.float32) * self.text_scale

    # ---------------------------------------------------------------- the sampler
    def sample(self, cond: Conditioning, previous: np.ndarray, noise: np.ndarray, timesteps: int,
               cfg: float) -> np.ndarray:
        spec = self.layout["locdit_step"]
        names = [t.name for t in spec.inputs]

        def velocity(*arrays):
            return self.packages(spec.name, **dict(zip(names, arrays)))[spec.primary_output]

        return sample_patch(velocity, cond.mu, previous, noise, timesteps, cfg, self.config["cfg_zero_init_fraction"],
                            self.config["sway_sampling_coef"])
