"""The speed paths against the plain ones, on the toolkit's converted components, with negative controls.

`predict` runs fused chains, rounds in place and frees values early; a trace runs one step per op,
never in place. Where the speed paths claim the same bits, the two must agree bit for bit; each
claim has a control showing the comparison would see the difference the claim rules out.
"""
import gc
import subprocess
import sys

import numpy as np
import pytest

from contract.layout import component_names
from runtime.mil import MilModel
from runtime.mil import model as model_module
from coremltools.converters.mil.mil import Program

from .test_fuse import C, T, _snake_program

COMPONENTS = component_names("published")


def _feed(model, seed=0):
    rng = np.random.default_rng(seed)
    feed = {}
    for d in model.inputs:
        if np.dtype(d.dtype).kind == "i":
            feed[d.name] = np.full(d.shape, 3, np.int32)
        else:
            feed[d.name] = (0.5 * rng.standard_normal(d.shape)).astype(np.float16).astype(np.float32)
    return feed


def _fp16_bits(x):
    return np.asarray(x, np.float32).astype(np.float16).view(np.uint16)


def _grouped(model):
    return any(s.info.op_type.startswith("grouped matmul") for s in model._plan.steps)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
@pytest.mark.parametrize("component", COMPONENTS)
def test_a_converted_component_runs_the_same_bits_fused_as_unfused(tiny_coreml, component, precision):
    model = MilModel.from_path(tiny_coreml / precision / f"{component}.mlpackage", compute="fp16")
    feed = _feed(model)
    fast = model.predict(feed)
    names = [d.name for d in model.outputs]
    plain = model.trace(feed, names=names)
    for name in names:
        a, b = _fp16_bits(fast[name]), _fp16_bits(plain[name].reshape(fast[name].shape))
        if not _grouped(model):
            assert np.array_equal(a, b), f"{component}/{precision}: {name} differs from the unfused ops"
        else:  # the grouped matmul sums in another order (fuse.py): fp32 rounding, then fp16
            ulps = np.abs(a.astype(np.int32) - b.astype(np.int32))
            assert ulps.max() <= 2 and np.mean(ulps > 0) < 0.05, (component, precision, name, ulps.max())


def test_the_bit_comparison_sees_a_chain_that_rounds_once_instead_of_after_every_op():
    # negative control: a fused chain computing in fp32 and rounding only its result (the obvious
    # "faster" fusion) is what the bit-for-bit claim rules out; the comparison above must see it
    model = MilModel.from_program(_snake_program(), compute="fp16")
    x = np.random.default_rng(1).standard_normal((1, C, T)).astype(np.float32)
    name = model.outputs[0].name
    unfused = _fp16_bits(model.trace({"x": x}, names=[name])[name])
    assert np.array_equal(_fp16_bits(model.predict({"x": x})[name]), unfused)
    fp32 = MilModel.from_program(_snake_program(), compute="fp32")
    rounded_once = _fp16_bits(next(iter(fp32.predict({"x": x.astype(np.float16).astype(np.float32)}).values())))
    assert np.count_nonzero(rounded_once != unfused) > 100


def test_the_program_check_sees_a_loader_that_does_not_free_it(built, monkeypatch):
    # negative control of test_memory.test_loading_frees_the_program_it_read
    _, path = built("decoder_trace")
    monkeypatch.setattr(model_module, "release_memory", lambda: None)
    gc.collect()
    gc.disable()
    try:
        MilModel.from_path(path)
        alive = [o for o in gc.get_objects() if isinstance(o, Program)]
    finally:
        gc.enable()
        gc.collect()
    assert alive


_FAULTS = """
import ctypes, resource
from runtime.mil import model
libc = model._libc
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 64 << 20
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size); ctypes.memset(block, 1, size); libc.free(block)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
with model._heap_only():
    faults()
    print(faults())
"""


@pytest.mark.skipif(model_module._libc is None, reason="glibc only")
def test_glibc_left_as_it_is_faults_every_big_block_in_again():
    # negative control of test_memory.test_a_big_freed_block_is_reused_not_faulted_in_again: the same
    # measurement, with the allocator untouched (RUNTIME_MALLOC=default), sees each 4 KiB page again
    pages = (64 << 20) // 4096

    def faults(env):
        out = subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True, text=True, check=True,
                             env={**__import__("os").environ, **env})
        return int(out.stdout.split()[-1])

    assert faults({"RUNTIME_MALLOC": "default"}) > pages // 2
    assert faults({}) < pages // 10
