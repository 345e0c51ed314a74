"""The runtime's one C kernel, fp16 rounding in place, built with the system's C compiler on first use.

The interpreter rounds every fp16 op's output. Through torch's casts (float32 -> a half buffer ->
float32, two passes) that took 0.70 ms per million elements; F16C's conversions in one pass take
0.21 ms (14 M elements: 12.6 -> 2.9 ms), to the same bits, and a full-size VAE call 17-26 % less
(TRIALS.md, "runtime · fp16 rounding in C"). Only on x86-64 CPUs with F16C (every x86 CPU since
2012) and with a C compiler ($CC, else cc): elsewhere, or with RUNTIME_NATIVE=0, `kernel()` is None
and the runtime rounds through torch as before. The library is built once per source, flags and
compiler into runtime/csrc/build (a temporary directory where that is not writable;
$RUNTIME_NATIVE_DIR overrides both), and checked against numpy's rounding on its edge cases
before it is used. `python -m runtime.native` builds it and says which rounding the runtime will
use (`make setup` runs it).
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SOURCE = Path(__file__).resolve().parent / "csrc" / "fp16_round.c"
# no contraction into FMAs (nothing to contract today; a guard for whoever extends the kernel)
FLAGS = ("-O3", "-shared", "-fPIC", "-mavx", "-mf16c", "-ffp-contract=off")
CPU_FLAGS = ("avx", "f16c")

_lock = threading.Lock()
_state: dict = {}   # "kernel": the ctypes function or None; "reason": why None; "path": the library


def kernel():
    """The C function `fp16_round(float *x, int64_t n)` (rounds x[0:n] in place), or None."""
    with _lock:
        if "kernel" not in _state:
            _state.update(_load())
        return _state["kernel"]


def why_not() -> str | None:
    """Why `kernel()` is None (None when it is there)."""
    kernel()
    return _state["reason"]


def _load() -> dict:
    if os.environ.get("RUNTIME_NATIVE", "1") == "0":
        return _without("RUNTIME_NATIVE=0")
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return _without(f"no C kernel for {platform.machine()} (F16C is x86)")
    missing = _missing_cpu_flags()
    if missing:
        return _without(f"the CPU lacks {', '.join(missing)}")
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        return _without("no C compiler (cc, or $CC)")
    try:
        path, fn = _build_and_open(compiler)
    except (OSError, subprocess.SubprocessError) as exc:
        return _without(f"cannot build {SOURCE.name} with {compiler}: {_first_line(exc)}")
    if not agrees_with_numpy(lambda flat: fn(flat.ctypes.data, flat.size)):
        return _without(f"{path} rounds differently from numpy on the edge cases")
    return {"kernel": fn, "reason": None, "path": path}


def _without(reason: str) -> dict:
    log.debug("fp16 rounding through torch: %s", reason)
    return {"kernel": None, "reason": reason, "path": None}


def _missing_cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ["a readable /proc/cpuinfo (F16C unknown)"]
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return [flag for flag in CPU_FLAGS if flag not in flags]


def _build_and_open(compiler: str):
    """(the library's path, its fp16_round function); a cached library that will not open is rebuilt."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode() + version.encode()).hexdigest()[:16]
    name = f"fp16_round-{key}.so"
    for directory in _build_directories():
        target = directory / name
        if target.is_file():
            try:
                return target, _open(target)
            except OSError:   # truncated or corrupt: build it again below
                log.warning("rebuilding %s: it does not load", target)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if not os.access(directory, os.W_OK):
            continue
        partial = directory / f".{name}.{os.getpid()}.{threading.get_ident()}"
        try:   # built beside, then renamed: a reader never opens a half-written library
            subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", str(partial)], check=True, capture_output=True,
                           text=True, timeout=120)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return target, _open(target)
    raise OSError("no writable directory to build it in")


def _build_directories() -> tuple[Path, ...]:
    """$RUNTIME_NATIVE_DIR alone when set; else runtime/csrc/build, then a temporary directory."""
    if os.environ.get("RUNTIME_NATIVE_DIR"):
        return (Path(os.environ["RUNTIME_NATIVE_DIR"]),)
    return SOURCE.parent / "build", Path(tempfile.gettempdir()) / f"voxcpm-runtime-{os.getuid()}"


def _open(path: Path):
    fn = ctypes.CDLL(str(path)).fp16_round
    fn.argtypes, fn.restype = (ctypes.c_void_p, ctypes.c_int64), None
    return fn


def _first_line(exc) -> str:
    if isinstance(exc, subprocess.CalledProcessError) and not (exc.stderr or "").strip():
        return f"it exited with status {exc.returncode}"
    text = getattr(exc, "stderr", None) or str(exc)
    lines = [line for line in str(text).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def edge_cases() -> np.ndarray:
    """float32 values where rounding to fp16 can go wrong, and a spread of ordinary ones (33 + 4096)."""
    special = np.array([0.0, -0.0, 1.0, -1.0, 65504.0, 65519.996, 65520.0, -65520.0, 1e9, np.inf, -np.inf,
                        2.0 ** -14, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -25, 2.0 ** -26, 1e-30, -2.0 ** -25,
                        1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 1 + 2.0 ** -11 + 2.0 ** -20, 2048.0 + 1.0, 2049.0,
                        2051.0, 0.1, -0.1, 1 / 3, np.pi, 6.1e-5, 6.0e-8, 5.9e-8, 65505.0, 32768.5], np.float32)
    spread = np.random.default_rng(0).standard_normal(4096).astype(np.float32) * np.float32(1000.0) ** \
        np.random.default_rng(1).uniform(-3, 1.5, 4096).astype(np.float32)
    return np.concatenate([special, spread.astype(np.float32)])


def agrees_with_numpy(round_in_place) -> bool:
    """`round_in_place(flat)` gives numpy's float16 rounding to the bit on `edge_cases()` (and an odd
    length, so a vector kernel's tail runs too)."""
    x = edge_cases()[:-1].copy()
    with np.errstate(over="ignore"):   # 65520 and up overflow to infinity, as they should
        want = x.astype(np.float16).astype(np.float32)
    round_in_place(x)
    return bool(np.array_equal(x.view(np.uint32), want.view(np.uint32)))


def main() -> int:
    fn = kernel()
    if fn is None:
        print(f"runtime: fp16 rounding through torch ({why_not()}); the interpreter works, more slowly")
    else:
        print(f"runtime: fp16 rounding in C (F16C), {_state['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
