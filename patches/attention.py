"""MiniCPM attention that converts: explicit GQA, 4-D boolean masks, caches passed in and out."""
import torch
import torch.nn.functional as F
from voxcpm.modules.minicpm4.model import MiniCPMAttention, apply_rotary_pos_emb

from .gqa import expand_kv_heads
from .masks import cache_mask, causal_mask


class ConvertibleAttention(MiniCPMAttention):
    """Same weights and maths as MiniCPMAttention; swapped in with `__class__`."""

    def _project(self, hidden: torch.Tensor, length: int, cos, sin):
        batch = hidden.shape[0]
        q = self.q_proj(hidden).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(hidden).view(batch, length, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(hidden).view(batch, length, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        if cos is not None:
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
        return q, k, v

    def _attend(self, q, k, v, mask) -> torch.Tensor:
        groups = self.num_key_value_groups
        out = F.scaled_dot_product_attention(q, expand_kv_heads(k, groups), expand_kv_heads(v, groups), attn_mask=mask)
        batch, _, length, _ = q.shape
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim))

    def forward(self, hidden_states, position_emb, is_causal):
        length = hidden_states.shape[1]
        cos, sin = position_emb if position_emb is not None else (None, None)
        q, k, v = self._project(hidden_states, length, cos, sin)
        mask = causal_mask(length, hidden_states.device) if is_causal else None
        return self._attend(q, k, v, mask), (k, v)

    def step(self, hidden, cos, sin, position, k_cache, v_cache, write):
        """One token [B, H] at `position`; returns (output [B, H], k_cache, v_cache) after `write`."""
        q, k, v = self._project(hidden.unsqueeze(1), 1, cos, sin)
        k_cache = write(k_cache, position, k)
        v_cache = write(v_cache, position, v)
        out = self._attend(q, k_cache, v_cache, cache_mask(k_cache.shape[2], position))
        return out.squeeze(1), k_cache, v_cache
