"""Importing this package registers every kernel."""
from . import (  # noqa: F401
    control, conv, elementwise, layout, linalg, norm, pool, recurrent, reduce, scatter_gather, state, tensor,
)
