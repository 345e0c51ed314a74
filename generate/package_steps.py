"""What every layout's converted packages share as `ModelSteps`: the packages behind one call, the VAE, the text.

A layout's steps (`generate.published_steps`, `generate.fast_steps`) subclass `PackageSteps` and
add prefill, advance and sample over their own packages. The VAE packages are the same in every
layout: the prompt is encoded in fixed windows and the patches decoded in chunks that reproduce
one whole-signal call (`generate.vae`); a stream decodes with the layout's streaming decoder package
where OUT has it, else windowed with the whole decoder (`generate.streaming`).
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from contract.layout import Layout

from .packages import Packages
from .streaming import open_package_stream
from .vae import decode_latent, decoder_context_frames, encode_audio, encoder_context_frames


class PackageSteps:
    def __init__(self, packages: Packages, constants: dict, config: dict, layout: Layout, precision: str,
                 vae_rates: tuple[list[int], list[int]]):
        self.packages, self.constants, self.config, self.layout = packages, constants, config, layout
        self.precision = precision
        self.encoder_context = encoder_context_frames(vae_rates[0])
        self.decoder_context = decoder_context_frames(vae_rates[1])
        self.patch_size, self.feat_dim, self.hop = config["patch_size"], config["feat_dim"], config["hop_length"]
        self.text_scale = np.float32(config["text_embedding_scale"])

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
        for spec in self.layout:
            if spec.name not in self.packages.paths or (not has_prompt and spec.name == "audio_vae_encoder"):
                continue   # an optional package OUT does not have, or the encoder without a prompt
            for function in spec.functions:
                self.packages.load(spec.name, function.name)
            if not spec.functions:
                self.packages.load(spec.name)

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

    # ---------------------------------------------------------------- the text
    def _text_embeddings(self, tokens: list[int]) -> np.ndarray:
        """[n, H]: the rows of embed_tokens (host side), times the text embedding scale."""
        return np.asarray(self.constants["embed_tokens"][tokens], dtype=np.float32) * self.text_scale
