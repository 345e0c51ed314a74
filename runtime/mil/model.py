"""MilModel: the numpy ML Program interpreter behind runtime.load(backend='mil')."""
import contextlib
import ctypes
import gc
import logging
import os
import threading
import time

import numpy as np

from .. import describe as _describe, fp16
from . import loader
from .executor import Plan
from .state import MilState, StateSlot

log = logging.getLogger(__name__)

COMPUTE_MODES = ("fp16", "fp32")


# mallopt parameters (glibc's malloc.h) and glibc's default for M_MMAP_MAX
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_MMAP_MAX = 65536
_KEEP_FREE_BYTES = 256 << 20


def _allocator_tuned() -> bool:
    return _libc is not None and os.environ.get("RUNTIME_MALLOC") != "default"


def _keep_free_memory():
    """Let glibc keep up to 256 MiB free at the top of its heap between runs (the next run reuses it)."""
    if _allocator_tuned():
        _libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_FREE_BYTES)


@contextlib.contextmanager
def _heap_only():
    """Serve a run's allocations from glibc's heap, where freed blocks are reused op after op.

    Above its mmap threshold (at most 32 MiB) glibc maps every block fresh and unmaps it on free,
    so a VAE's 56-220 MB activations were page-faulted in (zeroed by the kernel, 4 KiB at a time)
    op after op: a full-size validation took 119 million minor faults, 307 s of system time. Only
    during a run: torch's own calls in the heap fragment it (a full-size torch VAE decode of 500
    frames grew the heap by 7 GB for 2 GB of tensors). RUNTIME_MALLOC=default leaves glibc as it is
    (and `allocator_for_runs` does not trim either).
    """
    if not _allocator_tuned():
        yield
        return
    _libc.mallopt(_M_MMAP_MAX, 0)
    try:
        yield
    finally:
        _libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)


@contextlib.contextmanager
def allocator_for_runs(trim_every: float | None = None):
    """`_heap_only`, for code other than the interpreter (torch's calls); with `trim_every` seconds, a
    thread also hands glibc's free pages back that often meanwhile. A heap's free fragments otherwise
    stay resident: one full-size torch VAE decode of 500 frames grew it by ~4 GB for 1.7 GB of live
    tensors. Trimmed every 0.1 s, validate's VAE references peaked at 2971 MiB instead of 5507 (3275
    with glibc as it is), in 49.2 s instead of 44.8 (70.8), the same bits."""
    with _heap_only(), _trimmed_every(trim_every):
        yield


@contextlib.contextmanager
def _trimmed_every(seconds: float | None):
    if seconds is None or not _allocator_tuned():   # RUNTIME_MALLOC=default: glibc as it is, untrimmed too
        yield
        return
    stop = threading.Event()

    def trim():   # ctypes releases the GIL: the trims run beside torch's work
        while not stop.wait(seconds):
            _libc.malloc_trim(0)

    thread = threading.Thread(target=trim, name="runtime-trim", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def release_memory():
    """Free unreachable objects now and hand glibc's free pages back to the system: a PyMIL program
    is a web of reference cycles as big as the package (0.7 GB for the base LM step) that only a
    full collection frees, and glibc keeps freed pages below the top of its heap until asked (a
    full-size base LM step held 2.0 GiB after loading instead of 1.1)."""
    gc.collect()
    if _libc is not None:
        _libc.malloc_trim(0)


def _glibc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return None


def _one_blas_thread():
    """numpy's BLAS (OpenBLAS) on one thread, process-wide. After each product OpenBLAS's threads
    spin for a while waiting for the next; beside torch's two OpenMP threads on two cores they took
    a core from every `linear` the interpreter runs next (a full-size base LM step 105 -> 180 ms
    inside the generator, whose host code multiplies in numpy between calls). The interpreter's own
    numpy products are small and no slower on one thread. RUNTIME_BLAS_THREADS=default leaves it."""
    if os.environ.get("RUNTIME_BLAS_THREADS") == "default":
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:   # optional: without it numpy keeps its threads
        return
    threadpool_limits(1, user_api="blas")


_libc = _glibc()
_keep_free_memory()
_one_blas_thread()


class MilModel:
    """Runs one function of an ML Program op by op in numpy.

    compute="fp16" rounds every fp16-declared op output through float16
    (what Core ML does with an fp16 program); "fp32" carries those values in
    fp32 so that conversion errors can be told apart from fp16 rounding.
    (The package's weight precision is another matter: that is what it holds, not how it runs.)
    """

    backend = "mil"

    def __init__(self, function, inputs, outputs, states, compute="fp16", function_name=None, strict_inputs=False):
        if compute not in COMPUTE_MODES:
            raise ValueError(f"compute must be 'fp16' or 'fp32', got {compute!r}")
        self.compute, self.function_name = compute, function_name
        self.strict_inputs = strict_inputs  # True: the toolkit's own dtype check instead of Core ML's conversions
        self.inputs, self.outputs, self.states = inputs, outputs, states
        opset = int(function.opset_version.value) if function.opset_version is not None else 0
        self._plan = Plan(function, opset, compute == "fp16", function_name)
        self._state_names = {d.name for d in states}
        by_name = {d.name: d for d in outputs}
        # program outputs, in program order, paired with their descriptions
        self._out_descs = [by_name.get(v.name) or _describe.TensorDesc(v.name, (), object, kind="output") for v in function.outputs]
        self._in_dtypes = {n: v.dtype for n, v in function.inputs.items()}

    @classmethod
    def from_path(cls, path, function_name=None, compute="fp16", strict_inputs=False):
        t0 = time.perf_counter()
        model, spec = loader.load_spec(path)
        program = loader.load_program(model, spec)
        name = function_name or _describe.default_function(spec)
        name, function = loader.pick_function(program, name)
        ins, outs, states = _describe.describe(spec, function_name if function_name else _describe.default_function(spec))
        self = cls(function, ins, outs, states, compute, name, strict_inputs)
        del model, spec, program, function
        release_memory()
        log.info("mil: loaded %s (function %s, %d ops) in %.2f s", path, name, len(self._plan.steps), time.perf_counter() - t0)
        return self

    @classmethod
    def from_program(cls, program, function_name=None, compute="fp16", strict_inputs=False):
        """Interpret an in-memory PyMIL program (e.g. built with mb.program)."""
        from ..describe import TensorDesc
        from coremltools.converters.mil.mil import types

        name, function = loader.pick_function(program, function_name)
        ins, states = [], []
        for n, v in function.inputs.items():
            if types.is_state(v.sym_type):
                t = v.sym_type.wrapped_type()
                states.append(TensorDesc(n, tuple(t.get_shape()), types.nptype_from_builtin(t.get_primitive()), kind="state"))
            else:
                ins.append(TensorDesc(n, tuple(v.shape), types.nptype_from_builtin(v.dtype)))
        outs = [TensorDesc(v.name, tuple(v.shape) if v.shape else (), types.nptype_from_builtin(v.dtype), kind="output")
                for v in function.outputs]
        return cls(function, ins, outs, states, compute, name, strict_inputs)

    def new_state(self):
        return MilState(self.states, self.compute == "fp16")

    def predict(self, inputs, state=None, return_intermediates=False):
        """Run the function; returns name -> array (and the intermediates).

        ``return_intermediates``: True for every op output, or a collection of the names
        wanted (the others are released as the run goes, which matters for big programs).
        """
        env = self._prepare(_describe.check_inputs(inputs, self.inputs, cast=False, strict=self.strict_inputs))
        if self.states:
            if state is None:
                raise ValueError("this model has states: pass state=model.new_state()")
            env.update({n: StateSlot(state, n) for n in self._state_names})
        trace = None if return_intermediates is False or return_intermediates is None else {}
        names = None if trace is None or return_intermediates is True else frozenset(return_intermediates)
        with _heap_only():
            values = self._plan.run(env, trace, names)
            result = {d.name: self._output(v, d) for v, d in zip(values, self._out_descs)}
        return (result, trace) if trace is not None else result

    def trace(self, inputs, state=None, names=None):
        """Intermediate values, name -> array in op order (every one, or only ``names``)."""
        return self.predict(inputs, state=state, return_intermediates=True if names is None else names)[1]

    def _prepare(self, checked):
        """Private compute-form copies of the inputs (the executor may write into them)."""
        env = {}
        for d in self.inputs:
            v = checked[d.name]
            if np.dtype(d.dtype) != np.float16:
                env[d.name] = np.array(v, dtype=d.dtype)
            elif self.compute == "fp16":
                # float64 straight to fp16: through fp32 first would round twice
                env[d.name] = v.astype(np.float16).astype(np.float32) if v.dtype == np.float64 else fp16.round_to_fp16(v)
            else:
                env[d.name] = fp16.cast(v, np.float32) if v.dtype != np.float32 else v.copy()
        return env

    def _output(self, v, desc):
        want = np.dtype(desc.dtype) if desc.dtype is not object else None
        if want == np.float16 and self.compute == "fp32":
            want = np.dtype(np.float32)  # fp32 mode never rounds, not even at the end
        # always a private copy: outputs must not alias states or caches
        out = fp16.cast(v, want) if want is not None else v
        return np.array(out) if np.may_share_memory(out, v) else out

