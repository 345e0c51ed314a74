"""State object of the MIL interpreter (the counterpart of Core ML's MLState)."""
import numpy as np

from .. import fp16


class MilState:
    """Named arrays that persist across ``predict(..., state=s)`` calls.

    Values are held in compute form (fp32 for fp16 states, already rounded
    to fp16 in fp16 mode). ``read`` returns a copy in the declared dtype
    (fp16 states come back as float16 in fp16 mode), ``write`` replaces a
    value after checking its shape. ``names`` lists the states;
    ``s[name]`` and ``s[name] = arr`` are aliases of read/write.
    """

    def __init__(self, descs, fp16):
        self._descs = {d.name: d for d in descs}
        self._fp16 = fp16
        self._values = {d.name: np.zeros(d.shape, np.float32 if np.dtype(d.dtype).kind == "f" else d.dtype) for d in descs}

    @property
    def names(self):
        return list(self._descs)

    def read(self, name):
        desc = self._desc(name)
        v = self._values[name]
        if np.dtype(desc.dtype) == np.float16 and self._fp16:
            return fp16.cast(v, np.float16)
        return v.copy()

    def write(self, name, value):
        desc = self._desc(name)
        v = np.asarray(value)
        if tuple(v.shape) != tuple(desc.shape):
            raise ValueError(f"state {name!r}: got shape {v.shape}, expected {desc.shape}")
        self._values[name] = self.to_compute(name, v)

    def to_compute(self, name, value):
        desc = self._descs[name]
        if np.dtype(desc.dtype).kind != "f":
            return np.array(value, dtype=desc.dtype)
        if np.dtype(desc.dtype) == np.float16 and self._fp16:
            return fp16.round_to_fp16(value)
        return np.array(value, dtype=np.float32)

    __getitem__ = read
    __setitem__ = write

    def _desc(self, name):
        if name not in self._descs:
            raise KeyError(f"no state {name!r}; states are {self.names}")
        return self._descs[name]


class StateSlot:
    """What a state variable evaluates to inside the program."""

    __slots__ = ("state", "name")

    def __init__(self, state, name):
        self.state, self.name = state, name
