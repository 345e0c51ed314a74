"""The sizes a checkpoint's config.json gives, read once: every shape in the contract comes from here.

The config is a plain dict, so the same declaration describes the real VoxCPM 1.5 and the tiny
test fixture. Defaults are VoxCPM 1.5's own where voxcpm's schema has one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

# voxcpm's 44.1 kHz AudioVAE (VoxCPM 1.5): used when a config has no audio_vae_config
VOXCPM15_ENCODER_RATES = (2, 3, 6, 7, 7)
VOXCPM15_DECODER_RATES = (7, 7, 6, 3, 2)
VOXCPM15_DECODER_DIM = 2048
# voxcpm's causal AudioVAE blocks (modules/audiovae/audio_vae.py): the first and last convolutions
# have 7 taps, every residual unit a 7-tap convolution at dilation 1, 3 and 9 (then a 1-tap one)
VAE_KERNEL = 7
VAE_RESIDUAL_DILATIONS = (1, 3, 9)


@dataclass(frozen=True)
class ModelSizes:
    lm_hidden: int
    lm_layers: int
    residual_layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    encoder_hidden: int
    dit_hidden: int
    feat_dim: int
    patch_size: int
    latent_dim: int
    encoder_rates: tuple[int, ...]
    decoder_rates: tuple[int, ...]
    decoder_dim: int               # the AudioVAE decoder's width before its first upsampling block
    sample_rate: int
    vocab_size: int
    max_position_embeddings: int

    @property
    def hop(self) -> int:
        """Audio samples per latent frame (the product of the encoder rates)."""
        return math.prod(self.encoder_rates)

    @property
    def patch_samples(self) -> int:
        return self.hop * self.patch_size


def model_sizes(config: dict) -> ModelSizes:
    lm = config["lm_config"]
    vae = config.get("audio_vae_config") or {}
    heads = lm["num_attention_heads"]
    return ModelSizes(
        lm_hidden=lm["hidden_size"], lm_layers=lm["num_hidden_layers"],
        residual_layers=config.get("residual_lm_num_layers", 8), attention_heads=heads,
        kv_heads=lm.get("num_key_value_heads") or heads,
        head_dim=lm.get("kv_channels") or lm["hidden_size"] // heads,
        encoder_hidden=config["encoder_config"]["hidden_dim"], dit_hidden=config["dit_config"]["hidden_dim"],
        feat_dim=config.get("feat_dim", 64), patch_size=config.get("patch_size", 4),
        latent_dim=vae.get("latent_dim", 64),
        encoder_rates=tuple(vae.get("encoder_rates", VOXCPM15_ENCODER_RATES)),
        decoder_rates=tuple(vae.get("decoder_rates", VOXCPM15_DECODER_RATES)),
        decoder_dim=vae.get("decoder_dim", VOXCPM15_DECODER_DIM), sample_rate=vae.get("sample_rate", 44100),
        vocab_size=lm["vocab_size"],
        max_position_embeddings=lm.get("max_position_embeddings", 32768))


def sizes_from_generation_config(config: dict) -> ModelSizes:
    """The sizes a generation config (OUT/constants/config.json) records: what the torch-free generator
    declares its layout from. Configs older than a field get VoxCPM 1.5's value or a derived one."""
    return ModelSizes(
        lm_hidden=config["hidden_size"], lm_layers=config["base_lm_layers"],
        residual_layers=config["residual_lm_layers"],
        attention_heads=config.get("num_attention_heads", config["hidden_size"] // config["head_dim"]),
        kv_heads=config["num_key_value_heads"], head_dim=config["head_dim"],
        encoder_hidden=config["encoder_hidden"], dit_hidden=config["dit_hidden"], feat_dim=config["feat_dim"],
        patch_size=config["patch_size"], latent_dim=config["latent_dim"],
        encoder_rates=tuple(config.get("vae_encoder_rates") or VOXCPM15_ENCODER_RATES),
        decoder_rates=tuple(config.get("vae_decoder_rates") or VOXCPM15_DECODER_RATES),
        decoder_dim=config.get("vae_decoder_dim", VOXCPM15_DECODER_DIM), sample_rate=config["sample_rate"],
        vocab_size=config["vocab_size"],
        max_position_embeddings=config.get("max_position_embeddings", 32768))
