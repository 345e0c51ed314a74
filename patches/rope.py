"""LongRoPE cos/sin tables computed in FP32 from the config.

voxcpm computes the same tables at construction, but a checkpoint loaded in bfloat16 rounds
them; the step models slice the first `length` rows into their constants.
"""
import math

import torch


def rope_tables(lm_config, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each [length, head_dim] float32, scaled as MiniCPM's LongRoPE does."""
    head_dim = lm_config.kv_channels or lm_config.hidden_size // lm_config.num_attention_heads
    scaling = lm_config.rope_scaling
    inv_freq = 1.0 / (lm_config.rope_theta ** (torch.arange(0, head_dim, 2).float() / head_dim))
    long_context = lm_config.max_position_embeddings > scaling.original_max_position_embeddings
    factors = torch.tensor(scaling.long_factor if long_context else scaling.short_factor, dtype=torch.float32)
    positions = torch.arange(length, dtype=torch.float32)
    freqs = torch.outer(positions, 1.0 / factors) * inv_freq
    angles = torch.cat((freqs, freqs), dim=-1)
    scale = lm_config.max_position_embeddings / scaling.original_max_position_embeddings
    magnitude = math.sqrt(1 + math.log(scale) / math.log(scaling.original_max_position_embeddings))
    return angles.cos() * magnitude, angles.sin() * magnitude
