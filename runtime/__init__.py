"""Run a converted Core ML ML Program on any OS.

    import runtime
    m = runtime.load("model.mlpackage")            # backend="auto"
    m.backend                                     # "coreml" on macOS, else "mil"
    m.inputs, m.outputs, m.states                 # [runtime.describe.TensorDesc]
    s = m.new_state()                             # stateful models only
    out = m.predict({"x": x, "position": p}, state=s)   # name -> np.ndarray
    s.read("k_cache_0"); s.write("k_cache_0", arr)

``load(path, backend="auto", function=None, compute_units="ALL",
compute="fp16", strict_inputs=False)``

- ``function``: which function of a multifunction package to run (default:
  the package's default function); ``function_name=`` is the same, kept for
  callers of coremltools' spelling. A state made by one function's model
  serves every function that declares the same states.

- backend "coreml": coremltools MLModel (CompiledMLModel for .mlmodelc),
  ``compute_units`` one of ct.ComputeUnit names; macOS only, elsewhere
  ``BackendUnavailableError``.
- backend "mil": ``runtime.mil``, a numpy interpreter of the ML Program
  (MIL) in the package, on any OS. ``compute="fp16"`` rounds every
  fp16-declared op output through float16 like Core ML's fp16 programs;
  ``"fp32"`` keeps those values in fp32 (separates conversion error from
  rounding). ``predict(..., return_intermediates=True)`` (or
  ``trace(inputs)``) also returns every op output, in op order, to find
  the first op that diverges; pass a collection of names instead of True
  (``trace(inputs, names=...)``) to keep only those. Unknown ops raise
  ``UnsupportedOpError`` at load time.
- backend "auto": Core ML on macOS, the interpreter elsewhere (logged).

Inputs are checked against the model description before running: an
unknown or missing name, rank, shape or out-of-range flexible dimension
raises ``InputError`` naming the input. Dtypes are converted as Core ML
converts them (runtime/INPUTS.md): a float array for an int32 input is
truncated toward zero, ints for a float input are rounded, fp32 for an fp16
input is rounded to nearest even, a scalar stands for a shape-(1,) input;
values an int32 cannot hold are refused. ``strict_inputs=True`` refuses any
dtype kind other than the declared one instead (float for float, integer
for int32).

``runtime.metrics.compare(a, b)`` -> {corr, rel_l2, max_abs, finite} is the
shared accuracy helper. ``python -m bench.runtime_step`` measures the
interpreter against torch on a full-size decoder step.

``compute`` is how the interpreter computes, not what the package holds: "precision" in this
toolkit always means a package's weight precision (fp16, int8, fp32). ``precision=`` is still
accepted here as a deprecated alias of ``compute=``.
"""
import logging
import sys
import warnings

from . import metrics
from .describe import TensorDesc
from .errors import BackendUnavailableError, InputError, UnsupportedOpError

log = logging.getLogger(__name__)

__all__ = ["load", "release_memory", "run_allocator", "metrics", "InputError", "UnsupportedOpError", "BackendUnavailableError",
           "TensorDesc"]


def release_memory() -> None:
    """Free unreachable objects now and hand the allocator's free pages back to the system (glibc keeps
    them otherwise); for a caller that has just dropped a model."""
    from .mil.model import release_memory as release

    release()


def run_allocator(trim_every: float | None = None):
    """A context manager: the allocator setting the interpreter's runs use (glibc serves every block from
    its heap; a no-op off glibc), for other code, torch's calls, to run under the same conditions. With
    `trim_every` seconds a thread hands the heap's free pages back that often meanwhile (the heap's
    fragments otherwise stay resident: ~4 GB over one full-size torch VAE decode)."""
    from .mil.model import allocator_for_runs

    return allocator_for_runs(trim_every)


def load(path, backend="auto", function=None, compute_units="ALL", compute="fp16", precision=None,
         function_name=None, strict_inputs=False):
    """Load a .mlpackage (or .mlmodelc for Core ML) with the chosen backend."""
    if function is not None and function_name is not None and function != function_name:
        raise ValueError(f"function={function!r} and function_name={function_name!r} disagree: give one")
    function_name = function if function is not None else function_name
    if precision is not None:
        warnings.warn("runtime.load(precision=) is deprecated: it is the interpreter's compute mode, "
                      "now compute=", DeprecationWarning, stacklevel=2)
        compute = precision
    if backend == "auto":
        backend = "coreml" if sys.platform == "darwin" else "mil"
        log.info("runtime.load: backend auto -> %s (%s)", backend, sys.platform)
    if backend == "coreml":
        from .coreml_backend import CoreMLModel

        return CoreMLModel(path, function_name=function_name, compute_units=compute_units, strict_inputs=strict_inputs)
    if backend == "mil":
        from .mil import MilModel

        return MilModel.from_path(path, function_name=function_name, compute=compute, strict_inputs=strict_inputs)
    raise ValueError(f"backend must be 'auto', 'coreml' or 'mil', got {backend!r}")
