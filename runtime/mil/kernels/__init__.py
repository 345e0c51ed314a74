"""Importing this package registers every kernel."""
from . import control, conv, elementwise, linalg, norm, reduce, scatter_gather, state, tensor  # noqa: F401
