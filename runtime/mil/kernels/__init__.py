"""Importing this package registers every kernel."""
from . import (  # noqa: F401
    classify, control, conv, elementwise, image, layout, linalg, lists, nms, norm, pool, quantization, random_ops,
    recurrent, reduce, sampling, scatter_gather, state, tensor,
)
