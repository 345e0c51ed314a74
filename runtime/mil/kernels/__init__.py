"""Importing this package registers every kernel."""
from . import (  # noqa: F401
    control, conv, elementwise, image, layout, linalg, norm, pool, recurrent, reduce, sampling, scatter_gather, state, tensor,
)
