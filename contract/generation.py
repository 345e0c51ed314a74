"""The generation config: what an app needs besides the models, written by the converter to OUT/constants/config.json.

Sizes, rates and sampler settings in one JSON object; the generator reads it back through
`contract.artifacts` (and so does validation, for the context and the VAE rates).
"""
from __future__ import annotations

from . import defaults as d
from .sizes import model_sizes


def text_embedding_scale(lm_config: dict) -> float:
    """Text embeddings are multiplied by scale_emb only under MuP (voxcpm's rule; its schema default is on)."""
    return float(lm_config.get("scale_emb", 1.0)) if lm_config.get("use_mup", True) else 1.0


def generation_config(config: dict, max_context: int = d.MAX_CONTEXT, tokenizer_files: list[str] | None = None,
                      embed_dtype: str = "float32") -> dict:
    """What a Core ML generator needs besides the models: sizes, rates and sampler settings."""
    s = model_sizes(config)
    lm = config["lm_config"]
    lo, hi = d.DECODER_FRAMES
    return {
        "model": "VoxCPM 1.5",
        "hidden_size": s.lm_hidden, "base_lm_layers": s.lm_layers, "residual_lm_layers": s.residual_layers,
        "num_attention_heads": s.attention_heads, "num_key_value_heads": s.kv_heads, "head_dim": s.head_dim,
        "max_position_embeddings": s.max_position_embeddings, "encoder_hidden": s.encoder_hidden,
        "dit_hidden": s.dit_hidden, "vocab_size": s.vocab_size, "feat_dim": s.feat_dim, "latent_dim": s.latent_dim,
        "max_context": max_context, "sample_rate": s.sample_rate, "hop_length": s.hop, "patch_size": s.patch_size,
        "token_rate": s.sample_rate / (s.hop * s.patch_size),
        "vae_encoder_rates": list(s.encoder_rates), "vae_decoder_rates": list(s.decoder_rates),
        "vae_decoder_dim": s.decoder_dim,
        "cfg_value": d.CFG_VALUE, "inference_timesteps": d.INFERENCE_TIMESTEPS,
        "sway_sampling_coef": d.SWAY_SAMPLING_COEF, "cfg_zero_star": True,
        "cfg_zero_init_fraction": d.CFG_ZERO_INIT_FRACTION,
        "audio_start_token": d.AUDIO_START_TOKEN, "min_len": d.MIN_LEN, "max_length_ratio": d.MAX_LENGTH_RATIO,
        "max_length_offset": d.MAX_LENGTH_OFFSET, "prompt_context_patches": d.PROMPT_CONTEXT_PATCHES,
        "use_mup": bool(lm.get("use_mup", True)), "scale_emb": lm.get("scale_emb", 1.0),
        "text_embedding_scale": text_embedding_scale(lm),
        "vae_encoder_window": d.VAE_ENCODER_SECONDS * s.sample_rate, "decoder_frames": [lo, hi],
        "embed_tokens_dtype": embed_dtype,
        "tokenizer_files": list(tokenizer_files or []),
    }
