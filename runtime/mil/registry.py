"""Op kernel registry: MIL op type name -> kernel function and what the executor may assume of it.

A kernel is ``fn(a, op)``: ``a`` maps the op's input names to values
(numpy arrays, Python scalars/strings for constants, lists for variadic
inputs such as ``concat.values``; an absent optional input is missing
from ``a``), ``op`` is the ``OpInfo`` of the op (name, type, opset,
declared output dtypes, sub-blocks). It returns one array, or a tuple for
multi-output ops. Kernels compute in fp32; the executor rounds/casts every
output to the declared dtype afterwards, so kernels need not.

The properties a kernel registers with itself (``@kernel("scatter", fresh=True, ...)``) are what
the executor needs to run it fast and safely; a new kernel never means an edit in the executor:

- ``exact``: the output holds only values of the inputs (or exact results such as ``floor``), so
  an output built from already-rounded fp16 values needs no second rounding; such an output may
  also be a numpy view of an input, so liveness keeps the input alive as long as the output.
- ``exact_when``: a predicate ``(pymil_op) -> bool`` for ops that are exact in some modes only
  (a scatter in mode "update"); their outputs are never views.
- ``fresh``: the output is a new array nobody else references (an in-place write into it is safe).
- ``in_place``: the name of the input the kernel may overwrite when the executor says it is dead
  after this op (``op.in_place``); the kernel then returns that array.
- ``prepare``: ``(consts, pymil_op, fp16) -> consts``, called once when the op is compiled with its
  constant arguments (name -> value); what it returns is what the kernel receives instead (weights
  packed for a BLAS, in the precision the op computes in). A constant every reader of which was
  prepared is released, so a weight is held once, in its prepared form.
"""
from dataclasses import dataclass
from typing import Callable

KERNELS = {}


@dataclass(frozen=True)
class Kernel:
    fn: Callable
    exact: bool = False
    exact_when: "Callable | None" = None
    fresh: bool = False
    in_place: "str | None" = None
    prepare: "Callable | None" = None

    def is_exact(self, op) -> bool:
        return self.exact or (self.exact_when is not None and bool(self.exact_when(op)))


def kernel(*op_types, exact=False, exact_when=None, fresh=False, in_place=None, prepare=None):
    """Register ``fn`` as the kernel of each op type in ``op_types``, with its properties."""

    def register(fn):
        for name in op_types:
            if name in KERNELS:
                raise ValueError(f"kernel for {name!r} registered twice")
            KERNELS[name] = Kernel(fn, exact, exact_when, fresh, in_place, prepare)
        return fn

    return register


def get(op_type) -> "Kernel | None":
    _load_all()
    return KERNELS.get(op_type)


def covered():
    """Sorted list of op types the interpreter can run."""
    _load_all()
    return sorted(KERNELS)


def _load_all():
    from . import kernels  # noqa: F401  (importing the package registers every kernel)
