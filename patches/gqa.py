"""Grouped-query attention without `enable_gqa`.

coremltools 9.0 cannot convert `scaled_dot_product_attention(enable_gqa=True)`. Query head h
reads KV head h // groups, which is exactly what repeat_interleave along the head axis gives
(`expand_kv_heads`, the published layout). `grouped_attention` gets the same result without
copying the caches: the `groups` query heads of each KV head are stacked along the query axis,
so one attention per KV head reads its cache once (a 2048-slot cache is 8 x 512 KiB per layer
that repeat_interleave would copy per call at full size).
"""
import torch
import torch.nn.functional as F


def expand_kv_heads(states: torch.Tensor, groups: int) -> torch.Tensor:
    """[B, kv_heads, T, D] -> [B, kv_heads * groups, T, D]."""
    if groups == 1:
        return states
    return torch.repeat_interleave(states, groups, dim=1)


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """q [1, heads, C, D], k/v [1, kv_heads, L, D], mask [1, 1, C, L] -> [1, heads, C, D]."""
    _, heads, chunk, dim = q.shape
    kv_heads = k.shape[1]
    groups = heads // kv_heads
    stacked = q.reshape(1, kv_heads, groups * chunk, dim)      # row g * C + i: head kv * groups + g, query i
    out = F.scaled_dot_product_attention(stacked, k, v, attn_mask=mask.repeat(1, 1, groups, 1))
    return out.reshape(1, heads, chunk, dim)
