"""Grouped-query attention without `enable_gqa`.

coremltools 9.0 cannot convert `scaled_dot_product_attention(enable_gqa=True)`. Query head h
reads KV head h // groups, which is exactly what repeat_interleave along the head axis gives.
"""
import torch


def expand_kv_heads(states: torch.Tensor, groups: int) -> torch.Tensor:
    """[B, kv_heads, T, D] -> [B, kv_heads * groups, T, D]."""
    if groups == 1:
        return states
    return torch.repeat_interleave(states, groups, dim=1)
