"""MiniCPM decoder layer with the MuP residual scale as an explicit constant.

voxcpm branches on `use_mup` inside every forward; the converted graph should hold one number:
scale_depth / sqrt(num_layers) when the config enables MuP, 1 otherwise.
"""
import math

from voxcpm.modules.minicpm4.model import MiniCPMDecoderLayer


def residual_scale(config) -> float:
    return config.scale_depth / math.sqrt(config.num_hidden_layers) if config.use_mup else 1.0


def embedding_scale(config) -> float:
    """Text embeddings are multiplied by scale_emb only under MuP (voxcpm's rule)."""
    return float(config.scale_emb) if config.use_mup else 1.0


class ConvertibleDecoderLayer(MiniCPMDecoderLayer):
    """Same weights and maths as MiniCPMDecoderLayer; `residual_scale` set when patched."""

    residual_scale: float = 1.0

    def _mlp_block(self, hidden):
        return hidden + self.mlp(self.post_attention_layernorm(hidden)) * self.residual_scale

    def forward(self, hidden_states, position_emb, is_causal):
        attn, kv = self.self_attn(self.input_layernorm(hidden_states), position_emb, is_causal)
        return self._mlp_block(hidden_states + attn * self.residual_scale), kv

    def step(self, hidden, cos, sin, position, k_cache, v_cache, write):
        attn, k_cache, v_cache = self.self_attn.step(self.input_layernorm(hidden), cos, sin, position,
                                                     k_cache, v_cache, write)
        return self._mlp_block(hidden + attn * self.residual_scale), k_cache, v_cache
