"""Memory: intermediates released after their last reader (a VAE decoder held ~10 GB otherwise), the program freed after loading, freed blocks reused."""
import ctypes
import gc
import resource
import tracemalloc

import numpy as np
import pytest
import coremltools as ct
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import Program

from runtime.mil import MilModel
from runtime.mil import model as model_module

N = 1 << 20  # 4 MiB of fp32 per intermediate
LINKS = 12


def _chain_model():
    """x + 1 + 1 + ... (LINKS adds), every intermediate as big as the input."""

    @mb.program(input_specs=[mb.TensorSpec((1, N))], opset_version=ct.target.iOS17)
    def chain(x):
        for _ in range(LINKS):
            x = mb.add(x=x, y=1.0)
        return x

    return MilModel.from_program(chain, compute="fp32")


def _peak_bytes(fn):
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_intermediates_are_released_after_their_last_reader():
    model = _chain_model()
    feed = {"x": np.zeros((1, N), np.float32)}
    out, peak = _peak_bytes(lambda: model.predict(feed))
    assert np.all(next(iter(out.values())) == LINKS)
    assert peak < 5 * 4 * N, f"peak {peak / 2**20:.0f} MiB: intermediates are kept alive"
    assert len(model.trace(feed)) == LINKS  # traces keep every value, by design


def test_a_trace_of_chosen_names_keeps_only_those():
    model = _chain_model()
    feed = {"x": np.zeros((1, N), np.float32)}
    every = list(model.trace(feed))
    wanted = [every[2], every[7]]
    chosen, peak = _peak_bytes(lambda: model.trace(feed, names=wanted))
    assert list(chosen) == wanted and np.all(chosen[every[7]] == 8)
    assert peak < 6 * 4 * N, f"peak {peak / 2**20:.0f} MiB: values not asked for are kept"


def test_a_value_read_two_blocks_down_is_not_released_early():
    @mb.program(input_specs=[mb.TensorSpec((4,)), mb.TensorSpec((1,))], opset_version=ct.target.iOS17)
    def nested(x, p):
        doubled = mb.mul(x=x, y=2.0)  # read only inside the inner cond
        pred = mb.greater(x=mb.reduce_sum(x=p), y=0.0)

        def outer_true():
            return mb.cond(pred=pred, _true_fn=lambda: mb.add(x=doubled, y=1.0),
                           _false_fn=lambda: mb.sub(x=doubled, y=1.0))

        return mb.cond(pred=pred, _true_fn=outer_true, _false_fn=lambda: mb.mul(x=x, y=0.0))

    model = MilModel.from_program(nested, compute="fp32")
    out = model.predict({"x": np.arange(4, dtype=np.float32), "p": np.ones(1, np.float32)})
    np.testing.assert_array_equal(next(iter(out.values())), [1, 3, 5, 7])


def test_loading_frees_the_program_it_read(built):
    # the PyMIL program is reference cycles as big as the package: freed only by a full collection
    _, path = built("decoder_trace")
    gc.collect()
    gc.disable()  # only the loader's own collection may free it
    try:
        model = MilModel.from_path(path)
        alive = [o for o in gc.get_objects() if isinstance(o, Program)]
    finally:
        gc.enable()
    assert model._plan.steps and not alive, "the PyMIL program outlived loading"


@pytest.mark.skipif(model_module._libc is None, reason="glibc only")
def test_a_big_freed_block_is_reused_not_faulted_in_again():
    # 64 MiB, the size of a VAE activation: glibc would mmap it afresh, 16k page faults a time
    size = 64 << 20
    libc = model_module._libc
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]

    def faults_of_one_block():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = libc.malloc(size)
        ctypes.memset(block, 1, size)
        libc.free(block)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    with model_module._heap_only():   # as during a run
        faults_of_one_block()
        assert faults_of_one_block() < size // 4096 // 10, "a freed block was handed back and faulted in again"


def _resident_freed_by_holes(trim_every):
    """MiB the resident set drops when every other of 24 heap blocks of 8 MiB is freed, inside the
    run allocator (freed blocks below the heap's top stay resident unless trimmed)."""
    import time

    import runtime
    from contract.memory import rss_mib

    with runtime.run_allocator(trim_every=trim_every):
        blocks = [np.ones(1 << 21, np.float32) for _ in range(24)]
        before = rss_mib()
        del blocks[:-1:2]   # 12 holes below the last block, which keeps them off the top
        time.sleep(0.6)
        freed = before - rss_mib()
        del blocks
    model_module.release_memory()
    return freed


@pytest.mark.skipif(model_module._libc is None, reason="glibc only")
def test_the_run_allocator_can_trim_as_it_goes():
    """With trim_every the heap's free fragments go back while the block runs (validate's torch VAE
    references: 5507 -> 2971 MiB at the peak); without it they stay (the negative control)."""
    assert _resident_freed_by_holes(0.1) > 60
    assert _resident_freed_by_holes(None) < 20
