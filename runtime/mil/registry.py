"""Op kernel registry: MIL op type name -> kernel function.

A kernel is ``fn(a, op)``: ``a`` maps the op's input names to values
(numpy arrays, Python scalars/strings for constants, lists for variadic
inputs such as ``concat.values``; an absent optional input is missing
from ``a``), ``op`` is the ``OpInfo`` of the op (name, type, opset,
declared output dtypes, sub-blocks). It returns one array, or a tuple for
multi-output ops. Kernels compute in fp32; the executor rounds/casts every
output to the declared dtype afterwards, so kernels need not.
"""
KERNELS = {}


def kernel(*op_types):
    """Register ``fn`` as the kernel of each op type in ``op_types``."""

    def register(fn):
        for name in op_types:
            if name in KERNELS:
                raise ValueError(f"kernel for {name!r} registered twice")
            KERNELS[name] = fn
        return fn

    return register


def get(op_type):
    return KERNELS.get(op_type)


def covered():
    """Sorted list of op types the interpreter can run."""
    from . import kernels  # noqa: F401  (registers everything)

    return sorted(KERNELS)
