"""Fast float16 <-> float32 conversions.

numpy converts between float16 and float32 one element at a time in C
(~150 us for a 256 KiB KV cache); torch's vectorised cast is ~20x faster.
A decode step moves dozens of caches through these casts, so the runtime
routes large arrays through torch when it is installed and falls back to
numpy otherwise. Both round to nearest even: the results are identical.
"""
import numpy as np

try:
    import torch as _torch
except ImportError:  # pragma: no cover - torch is optional for the runtime
    _torch = None

# below this many elements numpy's call overhead is lower than torch's
_TORCH_MIN_SIZE = 32768
_TORCH_DTYPES = {np.dtype(np.float16): "half", np.dtype(np.float32): "float"}


def cast(value, dtype):
    """``np.asarray(value).astype(dtype, copy=False)``, faster for big float arrays."""
    v = np.asarray(value)
    dtype = np.dtype(dtype)
    if v.dtype == dtype:
        return v
    if _torch is not None and v.size >= _TORCH_MIN_SIZE and v.dtype in _TORCH_DTYPES and dtype in _TORCH_DTYPES:
        t = _torch.from_numpy(_torch_compatible(v))
        return getattr(t, _TORCH_DTYPES[dtype])().numpy()
    return v.astype(dtype)


def round_to_fp16(value):
    """Round to the nearest float16 value, returned as a new float32 array."""
    v = np.asarray(value, dtype=np.float32)
    if _torch is not None and v.size >= _TORCH_MIN_SIZE:
        return _torch.from_numpy(_torch_compatible(v)).half().float().numpy()
    return v.astype(np.float16).astype(np.float32)


def _torch_compatible(v):
    # torch.from_numpy rejects read-only arrays and negative strides
    if not v.flags.writeable or any(s < 0 for s in v.strides):
        return np.array(v)
    return v
