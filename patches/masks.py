"""4-D boolean attention masks, built from shapes and positions rather than `is_causal`.

`is_causal=True` and 1-D masks either fail to convert or convert to shapes Core ML broadcasts
differently; an explicit [1, 1, q, k] boolean mask means the same thing everywhere.
"""
import torch


def causal_mask(length: int, device=None) -> torch.Tensor:
    """[1, 1, T, T]: query t sees keys 0..t."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril().view(1, 1, length, length)


def cache_mask(cache_length: int, position: torch.Tensor) -> torch.Tensor:
    """[1, 1, 1, L]: a single query at `position` sees cache slots 0..position."""
    slots = torch.arange(cache_length, device=position.device, dtype=position.dtype)
    return (slots <= position.reshape(1)).view(1, 1, 1, cache_length)


def chunk_mask(cache_length: int, start: torch.Tensor, chunk: int) -> torch.Tensor:
    """[1, 1, C, L]: the query at row i (position start + i) sees cache slots 0..start + i."""
    slots = torch.arange(cache_length, device=start.device, dtype=start.dtype)
    rows = start.reshape(1) + torch.arange(chunk, device=start.device, dtype=start.dtype)
    return (slots.view(1, cache_length) <= rows.view(chunk, 1)).view(1, 1, chunk, cache_length)
