"""Ways to write keys/values into a [1, kv_heads, L, D] cache at `position`.

`scatter_write` is functional (the published layout: caches are model inputs and outputs).
`inplace_write` mutates a registered buffer one position at a time (index_copy_, which
coremltools' torch.export frontend does not convert). `slice_write` mutates a registered buffer
over a chunk of positions with a slice assignment, which torch.export keeps and coremltools turns
into `slice_update` + `coreml_update_state` (the fast layout: caches are Core ML states) —
torch.jit.trace silently drops such writes (TRIALS.md).
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


def chunk_start(start: torch.Tensor, chunk: int, length: int) -> int:
    """The int32 tensor `start` [1] as a (symbolic) integer, bounded so that torch.export can prove
    that slots start..start+chunk-1 lie inside a cache of `length` slots."""
    begin = start.reshape(()).item()
    torch._check(begin >= 0)
    torch._check(begin + chunk <= length)
    return begin


def slice_write(cache: torch.Tensor, begin: int, states: torch.Tensor) -> torch.Tensor:
    """Write `states` [1, kv_heads, C, D] into slots begin..begin+C-1 of the buffer `cache` in place."""
    # one slice_scatter copied into the buffer, not `cache[:, :, begin:begin + C] = states`: that
    # exports as a slice of symbolic length that coremltools broadcasts into with a dynamic `tile`
    chunk = states.shape[2]
    cache.copy_(torch.slice_scatter(cache, states.to(cache.dtype), dim=2, start=begin, end=begin + chunk))
    return cache
