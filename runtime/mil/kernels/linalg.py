"""linear / matmul / einsum: linear through torch's BLAS (fp16 weights where the CPU multiplies fp16), else numpy's.

Why torch for linear: conv and the fp16 casts already run in torch, on its OpenMP threads. numpy's
OpenBLAS has a thread pool of its own whose threads spin for a while after every call; on 2 cores
each pool then waits for the core the other one holds. Linear through torch uses the same BLAS
(MKL) and threads as torch eager, the reference the interpreter is measured against.

Why fp16 weights: an fp16 program's linear reads fp16 inputs and an fp16 weight and writes an fp16
output; where torch multiplies fp16 matrices in hardware (x86 with AVX512-FP16 or AMX-FP16,
through oneDNN, accumulating in fp32) the weight is kept in fp16: half the memory (a full-size
base LM step holds 0.7 GB instead of 1.4 GB) and half the bytes read per call. The result differs
from the fp32 product rounded to fp16 by the order of the fp32 sums only (one fp16 step on ~0.2 %
of the outputs). Elsewhere, and in fp32 compute mode, weights stay fp32.

Threads: as many as torch is set to (OMP_NUM_THREADS), as in torch eager. A product of few rows
(the LM steps, locdit_step, feat_encoder) reads each weight once and is bound by memory; on an idle
2-core machine two threads read it faster than one: full-size base_lm_step 104.7 ms a call on two
threads against 133.2 on one, residual_lm_step 35.1 / 45.6, locdit_step 60.4 / 89.6 (fp16
packages, TRIALS "runtime · every component on an idle machine"). An earlier rule put products of
<= 256 rows on one thread, measured at load average 11, where a second thread waits for a core; a
machine shared that way is better served by OMP_NUM_THREADS=1 for the whole process (make test
does so). oneDNN's fp16 products are the same bits on one thread as on two.
"""
import os
import warnings

import numpy as np
from coremltools.converters.mil.mil import types

from ... import fp16
from ..registry import kernel
from ._util import f32, flag

try:
    import torch as _torch
except ImportError:  # pragma: no cover - torch only speeds things up here
    _torch = None


def _cpu_multiplies_fp16():
    """True on CPUs where torch's fp16 matmul is oneDNN's hardware kernel (fp32 accumulation).

    Elsewhere torch falls back to a generic fp16 GEMM many times slower than fp32.
    RUNTIME_FP16_GEMM=0/1 overrides (tests, measurements).
    """
    override = os.environ.get("RUNTIME_FP16_GEMM")
    if override is not None:
        return override == "1" and _torch is not None
    if _torch is None or not _torch.backends.mkldnn.is_available():
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_fp16" in flags or "amx_fp16" in flags


FP16_GEMM = _cpu_multiplies_fp16()


def _prepare_linear(consts, op, fp16_mode):
    """Weight (and bias) as torch tensors, once: fp16 when the op computes in fp16 (see above)."""
    w, b = consts.get("weight"), consts.get("bias")
    if _torch is None or not isinstance(w, np.ndarray):
        return consts
    half = (fp16_mode and FP16_GEMM and op.inputs["x"].dtype == types.fp16
            and op.outputs[0].dtype == types.fp16)
    ready = dict(consts)
    ready["weight"] = _packed(w, half)
    if isinstance(b, np.ndarray):
        ready["bias"] = _packed(b, half)
    return ready


def _packed(value, half):
    value = np.ascontiguousarray(value, dtype=np.float32)
    return _tensor(fp16.cast(value, np.float16) if half else value)


@kernel("linear", fresh=True, prepare=_prepare_linear)
def linear(a, op):
    x, w, b = f32(a["x"]), a["weight"], a.get("bias")  # weight [out, in]
    if _torch is None:
        # 2-D matmul so numpy makes a single GEMM/GEMV call for any batch shape
        y = np.matmul(x.reshape(-1, x.shape[-1]), w.T).reshape(x.shape[:-1] + (w.shape[0],))
        if b is not None:
            y += b
        return y
    w = w if isinstance(w, _torch.Tensor) else _tensor(w)
    return _torch_linear(x, w, b)


def _torch_linear(x, w, b):
    if w.dtype == _torch.float16:  # x holds fp16 values in fp16 mode: narrowing it is exact
        b = b if b is None or isinstance(b, _torch.Tensor) else _tensor(fp16.cast(f32(b), np.float16))
        y = _torch.nn.functional.linear(_tensor(fp16.cast(x, np.float16)), w, b)
        return fp16.cast(y.numpy(), np.float32)
    b = b if b is None or isinstance(b, _torch.Tensor) else _tensor(f32(b))
    return _torch.nn.functional.linear(_tensor(x), w, b).numpy()


def _tensor(v):
    """A torch view of a numpy array (no copy, also of read-only constants, which nobody writes)."""
    v = np.asarray(v)
    if any(s < 0 for s in v.strides):
        v = np.ascontiguousarray(v)
    if v.flags.writeable:
        return _torch.from_numpy(v)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "The given NumPy array is not writable"
        return _torch.from_numpy(v)


@kernel("matmul", fresh=True)
def matmul(a, op):
    x, y = f32(a["x"]), f32(a["y"])
    if flag(a, "transpose_x") and x.ndim > 1:
        x = np.swapaxes(x, -1, -2)
    if flag(a, "transpose_y") and y.ndim > 1:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


@kernel("einsum")
def einsum(a, op):
    vals = [f32(v) for v in a["values"]]
    return np.einsum(a["equation"], *vals, optimize=True)
