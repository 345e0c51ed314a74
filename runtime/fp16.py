"""Fast float16 <-> float32 conversions, and rounding to fp16 in place.

numpy converts between float16 and float32 one element at a time in C (~2 ns an element: 150 us
for an 80k-element activation); torch's vectorised cast (F16C) is ~10x faster. The interpreter
rounds every fp16 op output, so the runtime routes big arrays through torch when it is installed
and falls back to numpy otherwise. Both round to nearest even: the results are identical.

Two things made torch's cast slow inside the interpreter (a full-size locdit_step spent 90 ms a
call on 160 casts of ~80k elements, ~2.8 ms each instead of ~20 us):

- torch splits a cast of more than 32768 elements over its OpenMP threads; on 2 cores the second
  thread often has to wait for a core (OpenBLAS's threads spin after every matmul, other
  processes run), and the cast waits for it. Casts here run on one torch thread.
- each rounding allocated two arrays (fp16, then fp32); ``round_to_fp16(v, in_place=True)`` rounds
  an array the caller owns through a small reused fp16 buffer (in L2-sized chunks) instead.

Where the runtime's C kernel builds (`runtime.native`: x86-64 with F16C and a C compiler), big
arrays are rounded by it in one pass instead, 3-4x faster than torch's two casts, to the same bits.
"""
import threading

import numpy as np

try:
    import torch as _torch
except ImportError:  # pragma: no cover - torch is optional for the runtime
    _torch = None

# below this many elements numpy's call overhead is lower than torch's (~4 us a call)
_TORCH_MIN_SIZE = 4096
# the reused fp16 buffer: 1 MiB, chunks of 512k elements stay in L2 between the two casts
_CHUNK = 1 << 19
_TORCH_DTYPES = {np.dtype(np.float16): "half", np.dtype(np.float32): "float"}
_local = threading.local()


def cast(value, dtype):
    """``np.asarray(value).astype(dtype, copy=False)``, faster for big float arrays."""
    v = np.asarray(value)
    dtype = np.dtype(dtype)
    if v.dtype == dtype:
        return v
    if _torch is not None and v.size >= _TORCH_MIN_SIZE and v.dtype in _TORCH_DTYPES and dtype in _TORCH_DTYPES:
        out = np.empty(v.shape, dtype)
        with one_thread():
            _torch.from_numpy(out).copy_(_torch.from_numpy(_torch_compatible(v)))
        return out
    return v.astype(dtype)


def round_to_fp16(value, in_place=False):
    """Round to the nearest float16 value, as float32.

    ``in_place``: ``value`` is a float32 array the caller owns (nobody else reads it); it is
    rounded where it is and returned. Otherwise (or when it cannot be) the result is a new array.
    """
    v = np.asarray(value)
    if v.size < _TORCH_MIN_SIZE or (_torch is None and not _native_round()):
        return v.astype(np.float16).astype(np.float32)
    if v.dtype == np.float16:
        return cast(v, np.float32)  # already fp16 values: widening is exact
    flat = _flat_view(v) if in_place and v.dtype == np.float32 and v.flags.writeable else None
    if flat is None:
        v = np.array(v, dtype=np.float32, order="C")  # a new array
        flat = v.reshape(-1)
    _round_flat(flat)
    return v


def _round_flat(flat):
    """Round a 1-D contiguous float32 array to fp16 values, in place: by the C kernel, else through
    the thread's buffer with torch's casts."""
    native_round = _native_round()
    if native_round:
        native_round(flat.ctypes.data, flat.size)   # ctypes releases the GIL: a chain's slices round in parallel
        return
    buf = _buffer()
    with one_thread():
        for start in range(0, flat.size, _CHUNK):
            t = _torch.from_numpy(flat[start:start + _CHUNK])
            t.copy_(buf[:t.numel()].copy_(t))


def _flat_view(v):
    """A 1-D view of all of ``v``'s elements when they fill one C- or F-ordered block, else None."""
    if not (v.flags.c_contiguous or v.flags.f_contiguous):
        return None
    return v.ravel(order="K")


_native: list = []   # [the C kernel, or False], resolved on first use


def _native_round():
    if not _native:
        from . import native   # here, not at import: `python -m runtime.native` imports the package first

        _native.append(native.kernel() or False)
    return _native[0]


def _buffer():
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = _torch.empty(_CHUNK, dtype=_torch.float16)
    return buf


class one_thread:
    """torch on one thread inside the block (see the module docstring), restored after."""

    def __enter__(self):
        self.n = _torch.get_num_threads()
        if self.n != 1:
            _torch.set_num_threads(1)

    def __exit__(self, *exc):
        if self.n != 1:
            _torch.set_num_threads(self.n)


def _torch_compatible(v):
    # torch.from_numpy rejects read-only arrays and negative strides
    if not v.flags.writeable or any(s < 0 for s in v.strides):
        return np.array(v)
    return v
