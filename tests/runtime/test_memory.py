"""The interpreter releases each intermediate after its last reader (a VAE decoder held ~10 GB otherwise)."""
import tracemalloc

import numpy as np
import coremltools as ct
from coremltools.converters.mil import Builder as mb

from runtime.mil import MilModel


def test_intermediates_are_released_after_their_last_reader():
    n = 1 << 20  # 4 MiB of fp32 per intermediate

    @mb.program(input_specs=[mb.TensorSpec((1, n))], opset_version=ct.target.iOS17)
    def chain(x):
        for _ in range(12):
            x = mb.add(x=x, y=1.0)
        return x

    model = MilModel.from_program(chain, precision="fp32")
    feed = {"x": np.zeros((1, n), np.float32)}
    tracemalloc.start()
    out = model.predict(feed)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert np.all(next(iter(out.values())) == 12)
    assert peak < 5 * 4 * n, f"peak {peak / 2**20:.0f} MiB: intermediates are kept alive"
    intermediates = model.trace(feed)  # traces keep every value, by design
    assert len(intermediates) == 12


def test_a_trace_of_chosen_names_keeps_only_those():
    n = 1 << 20

    @mb.program(input_specs=[mb.TensorSpec((1, n))], opset_version=ct.target.iOS17)
    def chain(x):
        for _ in range(12):
            x = mb.add(x=x, y=1.0)
        return x

    model = MilModel.from_program(chain, precision="fp32")
    feed = {"x": np.zeros((1, n), np.float32)}
    every = list(model.trace(feed))
    wanted = [every[2], every[7]]
    tracemalloc.start()
    chosen = model.trace(feed, names=wanted)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert list(chosen) == wanted and np.all(chosen[every[7]] == 8)
    assert peak < 6 * 4 * n, f"peak {peak / 2**20:.0f} MiB: values not asked for are kept"
