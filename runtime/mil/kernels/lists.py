"""make_list / list_read / list_write / list_scatter / list_gather / list_length (TensorArray-like).

A list value is an immutable ``MilList``: every write returns a new one, so a list carried
through while_loop iterations or read after a later write never changes under its readers.
Elements never written read as zeros of the element shape (coremltools' test: a new list of
length 2 reads [0, 0]); a write past the end grows the list, filling the gap with zeros.
"""
import numpy as np

from ..registry import kernel
from ._util import ints


class MilList:
    __slots__ = ("items", "elem_shape", "dtype")

    def __init__(self, items, elem_shape, dtype):
        self.items, self.elem_shape, self.dtype = tuple(items), elem_shape, dtype

    def __len__(self):
        return len(self.items)

    def zeros(self):
        if self.elem_shape is None:
            raise ValueError("read of an unwritten list element whose shape is not known yet")
        return np.zeros(self.elem_shape, self.dtype)

    def read(self, i):
        if not 0 <= i < len(self.items):
            raise IndexError(f"list index {i} out of range for a list of length {len(self.items)}")
        v = self.items[i]
        return self.zeros() if v is None else v

    def written(self, updates):
        """A new list with ``updates`` (index -> value) applied, grown as needed."""
        items = list(self.items)
        items += [None] * (max(updates, default=-1) + 1 - len(items))
        for i, v in updates.items():
            items[i] = np.array(v)  # a copy: a later in-place write into v must not reach the list
        shape = self.elem_shape
        if shape is None and updates:
            shape = np.shape(next(iter(updates.values())))
        return MilList(items, shape, self.dtype)


def _elem_shape(a):
    shape = a.get("elem_shape")
    if shape is None:
        return None
    values = list(shape) if isinstance(shape, (list, tuple)) else list(np.atleast_1d(shape))
    if any(isinstance(v, str) or np.asarray(v).dtype.kind not in "iu" for v in values):
        return None  # symbolic element shape: known from the first write
    return tuple(int(np.asarray(v)) for v in values)


@kernel("make_list")
def make_list(a, op):
    dtype = {"fp16": np.float32, "fp32": np.float32, "int32": np.int32, "bool": bool}.get(a.get("dtype", "fp32"), np.float32)
    return MilList([None] * int(a.get("init_length", 1)), _elem_shape(a), dtype)


@kernel("list_length")
def list_length(a, op):
    return np.int32(len(a["ls"]))


@kernel("list_read", exact=True)
def list_read(a, op):
    return a["ls"].read(int(np.asarray(a["index"]).reshape(-1)[0]))


@kernel("list_write")
def list_write(a, op):
    return a["ls"].written({int(np.asarray(a["index"]).reshape(-1)[0]): a["value"]})


@kernel("list_scatter")
def list_scatter(a, op):
    values = np.asarray(a["value"])
    return a["ls"].written({i: values[k] for k, i in enumerate(ints(a["indices"]))})


@kernel("list_gather", exact=True)
def list_gather(a, op):
    ls = a["ls"]
    return np.stack([ls.read(i) for i in ints(a["indices"])])
