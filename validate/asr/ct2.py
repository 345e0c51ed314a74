"""Read a CTranslate2 `model.bin` without the ctranslate2 package.

Layout (binary version 6, little-endian), as written by ctranslate2's `ModelSpec._serialize`:

    u32 binary_version
    str spec_name            # str = u16 length (incl. the NUL) + utf-8 bytes + NUL
    u32 spec_revision
    u32 n_variables
    n_variables × { str name; u8 rank; u32 dims[rank]; u8 dtype_id; u32 n_bytes; bytes data }
    u32 n_aliases
    n_aliases × { str alias; str target }

dtype ids follow ctranslate2's `DataType` enum: float32, int8, int16, int32, float16, bfloat16.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

_DTYPES = {0: np.dtype("<f4"), 1: np.dtype("i1"), 2: np.dtype("<i2"), 3: np.dtype("<i4"), 4: np.dtype("<f2")}
_BFLOAT16 = 5
SUPPORTED_BINARY_VERSIONS = (5, 6)


class Ct2FormatError(ValueError):
    """The bytes are not a CTranslate2 model this reader understands."""


@dataclass
class Ct2Model:
    spec_name: str
    spec_revision: int
    binary_version: int
    variables: dict[str, np.ndarray] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        """A variable by name, following aliases (e.g. decoder/projection/weight)."""
        seen = set()
        while name in self.aliases and name not in seen:
            seen.add(name)
            name = self.aliases[name]
        return self.variables[name]


def read_ct2(buf: bytes | memoryview) -> Ct2Model:
    """Parse a whole model.bin held in memory. Arrays are read-only views into `buf`."""
    mv = memoryview(buf)
    off = 0

    def take(fmt: str):
        nonlocal off
        size = struct.calcsize("<" + fmt)
        if off + size > len(mv):
            raise Ct2FormatError(f"truncated model.bin at byte {off}")
        (value,) = struct.unpack_from("<" + fmt, mv, off)
        off += size
        return value

    def string() -> str:
        nonlocal off
        n = take("H")
        if n == 0 or off + n > len(mv):
            raise Ct2FormatError(f"bad string at byte {off}")
        raw = bytes(mv[off : off + n])
        off += n
        if raw[-1] != 0:
            raise Ct2FormatError(f"string at byte {off - n} is not NUL-terminated")
        return raw[:-1].decode("utf-8")

    version = take("I")
    if version not in SUPPORTED_BINARY_VERSIONS:
        raise Ct2FormatError(f"unsupported CTranslate2 binary version {version} (known: {SUPPORTED_BINARY_VERSIONS})")
    model = Ct2Model(spec_name=string(), spec_revision=take("I"), binary_version=version)
    for _ in range(take("I")):
        name = string()
        shape = tuple(take("I") for _ in range(take("B")))
        dtype_id = take("B")
        n_bytes = take("I")
        if off + n_bytes > len(mv):
            raise Ct2FormatError(f"variable {name} runs past the end of the file")
        if dtype_id == _BFLOAT16:
            raw = np.frombuffer(mv, dtype="<u2", count=n_bytes // 2, offset=off)
            arr = (raw.astype(np.uint32) << 16).view(np.float32)
        elif dtype_id in _DTYPES:
            dt = _DTYPES[dtype_id]
            if n_bytes != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
                raise Ct2FormatError(f"variable {name}: {n_bytes} bytes for shape {shape} of {dt}")
            arr = np.frombuffer(mv, dtype=dt, count=n_bytes // dt.itemsize, offset=off)
        else:
            raise Ct2FormatError(f"variable {name}: unknown dtype id {dtype_id}")
        model.variables[name] = arr.reshape(shape)
        off += n_bytes
    for _ in range(take("I")):
        alias = string()
        model.aliases[alias] = string()
    if off != len(mv):
        raise Ct2FormatError(f"{len(mv) - off} trailing bytes after the aliases")
    return model
