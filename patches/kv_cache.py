"""Two ways to write one step's key/value into a [1, kv_heads, L, D] cache at `position`.

`scatter_write` is functional (the published layout: caches are model inputs and outputs).
`inplace_write` mutates a registered buffer (the stateful layout: caches are Core ML states);
it must be exported with torch.export — torch.jit.trace silently drops the write.
"""
import torch


def _slot_index(cache: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    _, heads, _, dim = cache.shape
    return position.reshape(1, 1, 1, 1).long().expand(1, heads, 1, dim)


def scatter_write(cache: torch.Tensor, position: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """A new cache equal to `cache` with slot `position` replaced by `states` [1, kv_heads, 1, D]."""
    return torch.scatter(cache, 2, _slot_index(cache, position), states.to(cache.dtype))


def inplace_write(cache: torch.Tensor, position: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """Write slot `position` of the buffer `cache` in place and return it."""
    cache.index_copy_(2, position.reshape(1).long(), states.to(cache.dtype))
    return cache
