"""The MiniCPM stack over a chunk of consecutive positions, its KV caches written in place (Core ML states).

voxcpm prefills with `MiniCPMModel.forward` over the whole prompt and copies the keys and values
into its StaticKVCache, then decodes one position at a time with `forward_step`. Here both are one
function: C positions from `begin`, keys/values written into the cache buffers at begin..begin+C-1
(`slice_write`), row i attending to slots 0..begin+i (`chunk_mask`) with grouped-query attention
that does not copy the caches. C = 1 is a decode step. Same weights and maths as voxcpm's modules
(tests/patches/test_fast.py); the functions take the patched modules (`apply.patch_model`).
"""
import torch

from .gqa import grouped_attention
from .kv_cache import slice_write
from .masks import chunk_mask


def attention_chunk(attn, hidden: torch.Tensor, cos, sin, begin: int, mask: torch.Tensor,
                    k_cache: torch.Tensor, v_cache: torch.Tensor, keep=None) -> torch.Tensor:
    """hidden [1, C, H] at positions begin..begin+C-1, mask [1, 1, C, L] -> [1, C, H]. `keep` [1, 1, C, 1]:
    1 for the rows whose keys/values are written, 0 for padding rows (written as zeros)."""
    chunk = hidden.shape[1]
    q, k, v = attn._project(hidden, chunk, cos, sin)
    slice_write(k_cache, begin, k if keep is None else k * keep)
    slice_write(v_cache, begin, v if keep is None else v * keep)
    out = grouped_attention(q, k_cache, v_cache, mask)
    return attn.o_proj(out.transpose(1, 2).reshape(1, chunk, attn.num_heads * attn.head_dim))


def layer_chunk(layer, hidden, cos, sin, begin, mask, k_cache, v_cache, keep=None) -> torch.Tensor:
    attn = attention_chunk(layer.self_attn, layer.input_layernorm(hidden), cos, sin, begin, mask, k_cache, v_cache,
                           keep)
    return layer._mlp_block(hidden + attn * layer.residual_scale)


def lm_chunk(lm, embeds: torch.Tensor, cos, sin, begin: int, start: torch.Tensor, k_caches, v_caches,
             keep=None) -> torch.Tensor:
    """embeds [1, C, H] at positions begin..begin+C-1 (`start` = begin as a tensor) -> the final-norm
    hidden states [1, C, H]; every layer's cache written (padding rows as zeros, see `attention_chunk`)."""
    hidden, mask = embeds, chunk_mask(k_caches[0].shape[2], start, embeds.shape[1])
    for layer, k_cache, v_cache in zip(lm.layers, k_caches, v_caches):
        hidden = layer_chunk(layer, hidden, cos, sin, begin, mask, k_cache, v_cache, keep)
    return lm.norm(hidden)
