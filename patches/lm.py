"""MiniCPM stack with a convertible full-sequence forward and a cache-explicit step."""
import torch
from voxcpm.modules.minicpm4.model import MiniCPMModel


class ConvertibleMiniCPMModel(MiniCPMModel):
    """Same weights and maths as MiniCPMModel; swapped in with `__class__`."""

    def forward(self, inputs_embeds, is_causal=True):
        length = inputs_embeds.shape[1]
        position_emb = None
        if self.rope_emb is not None:  # a static slice instead of a gather from the 32k table
            position_emb = (self.rope_emb.cos_cached[:length], self.rope_emb.sin_cached[:length])
        hidden, caches = inputs_embeds, []
        for layer in self.layers:
            hidden, kv = layer(hidden, position_emb, is_causal)
            caches.append(kv)
        return self.norm(hidden), caches

    def step(self, embed, position, cos, sin, k_caches, v_caches, write):
        """One token: embed [B, H], cos/sin [1, D] at `position`; returns (hidden, k_caches, v_caches)."""
        hidden, new_k, new_v = embed, [], []
        for layer, k_cache, v_cache in zip(self.layers, k_caches, v_caches):
            hidden, k_cache, v_cache = layer.step(hidden, cos, sin, position, k_cache, v_cache, write)
            new_k.append(k_cache)
            new_v.append(v_cache)
        return self.norm(hidden), new_k, new_v


def cache_shape(lm: MiniCPMModel, max_context: int) -> tuple[int, int, int, int]:
    config = lm.config
    head_dim = config.kv_channels or config.hidden_size // config.num_attention_heads
    return (1, config.num_key_value_heads, max_context, head_dim)


def empty_caches(lm: MiniCPMModel, max_context: int, dtype=torch.float32):
    shape = cache_shape(lm, max_context)
    layers = len(lm.layers)
    return [torch.zeros(shape, dtype=dtype) for _ in range(layers)], [torch.zeros(shape, dtype=dtype) for _ in range(layers)]
