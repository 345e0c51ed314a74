"""runtime.native: the C fp16 rounding builds where it can, rounds as numpy does to the bit, and
anything that stops it (no compiler, a corrupt library, RUNTIME_NATIVE=0) leaves torch's rounding."""
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime import fp16, native

ROOT = Path(__file__).resolve().parents[2]
CAN_BUILD = (platform.machine().lower() in ("x86_64", "amd64") and shutil.which("cc") is not None
             and not native._missing_cpu_flags())
needs_kernel = pytest.mark.skipif(not CAN_BUILD, reason="the C kernel needs x86-64 with F16C and cc")


def _state_of(env: dict) -> str:
    """What `python -m runtime.native` says in a fresh process with `env`."""
    result = subprocess.run([sys.executable, "-m", "runtime.native"], cwd=ROOT, env={**os.environ, **env},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@needs_kernel
def test_the_kernel_builds_here_and_the_runtime_uses_it():
    assert native.kernel() is not None, native.why_not()
    assert fp16._native_round() is native.kernel()


@needs_kernel
@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_every_kind_of_float32_rounds_as_numpy_does():
    """4 M random bit patterns (subnormals, infinities, NaNs, ties), from an odd offset and length."""
    bits = np.random.default_rng(7).integers(0, 2 ** 32, size=(1 << 22) + 5, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)[3:]
    want = x.astype(np.float16).astype(np.float32)
    got = x.copy()
    native.kernel()(got.ctypes.data, got.size)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))


def test_the_self_check_fails_a_rounding_that_is_wrong():
    """Negative controls: the check the library must pass before use rejects near misses."""
    def truncate(flat):   # drops the low mantissa bits instead of rounding them
        flat.view(np.uint32)[:] &= np.uint32(0xFFFFE000)

    def ties_away(flat):  # rounds half away from zero
        flat[:] = np.where(np.abs(flat) < 65520, flat, np.copysign(np.float32(np.inf), flat))
        flat.view(np.uint32)[:] = (flat.view(np.uint32) + np.uint32(0x1000)) & np.uint32(0xFFFFE000)

    assert native.agrees_with_numpy(lambda flat: fp16.round_to_fp16(flat, in_place=True))
    assert not native.agrees_with_numpy(truncate)
    assert not native.agrees_with_numpy(ties_away)
    assert not native.agrees_with_numpy(lambda flat: None)


def test_runtime_native_0_keeps_torch_rounding():
    assert _state_of({"RUNTIME_NATIVE": "0"}) == \
        "runtime: fp16 rounding through torch (RUNTIME_NATIVE=0); the interpreter works, more slowly"


@needs_kernel
def test_a_compiler_that_fails_leaves_torch_rounding(tmp_path):
    said = _state_of({"CC": "/bin/false", "RUNTIME_NATIVE_DIR": str(tmp_path)})
    assert said.startswith("runtime: fp16 rounding through torch (cannot build fp16_round.c with /bin/false: "
                           "it exited with status 1)"), said
    assert not list(tmp_path.iterdir())   # no half-built library left behind


@needs_kernel
def test_a_corrupt_cached_library_is_built_again(tmp_path):
    env = {"RUNTIME_NATIVE_DIR": str(tmp_path)}
    assert "fp16 rounding in C" in _state_of(env)
    (library,) = tmp_path.glob("fp16_round-*.so")
    library.write_bytes(b"not a library")
    assert _state_of(env) == f"runtime: fp16 rounding in C (F16C), {library}"
    assert library.stat().st_size > 1000


@needs_kernel
def test_big_roundings_take_the_kernel_and_give_torchs_bits(monkeypatch):
    x = (np.random.default_rng(3).standard_normal(300_001) * 100).astype(np.float32)
    by_c = fp16.round_to_fp16(x)
    monkeypatch.setattr(fp16, "_native", [False])
    by_torch = fp16.round_to_fp16(x)
    assert np.array_equal(by_c.view(np.uint32), by_torch.view(np.uint32))
    assert not np.array_equal(by_c, x)   # it did round
