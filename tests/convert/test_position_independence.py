"""The traced LM steps (the graphs that are converted) are not baked to the example position.

The trace is made exactly as conversion makes it (convert.converters); then the traced module
and the eager module each run 10 steps from empty caches at positions other than the example,
feeding their own caches forward, and must agree on every output and every cache.
"""
import pytest
import torch

from convert.converters import EXAMPLE_POSITION, examples, trace
from patches.modules import build

POSITIONS = [0, 1, 2, 4, 5, 17, 100, 257, 400, 511]


@pytest.fixture(scope="module")
def patched_model(tiny_dir):
    from patches.apply import patch_model
    from checkpoint.loading import load_voxcpm

    return patch_model(load_voxcpm(tiny_dir))


@pytest.mark.parametrize("name", ["base_lm_step", "residual_lm_step"])
def test_traced_step_follows_position(patched_model, tiny_interfaces, name):
    iface = tiny_interfaces[name]
    eager = build(iface, patched_model)
    traced = trace(eager, examples(iface))
    assert EXAMPLE_POSITION not in POSITIONS
    layers = iface.caches.layers
    cache_shape = iface.inputs[2].shape
    caches_eager = [torch.zeros(cache_shape) for _ in range(2 * layers)]
    caches_traced = [c.clone() for c in caches_eager]
    generator = torch.Generator().manual_seed(1)
    n_hidden = len(iface.outputs) - 2 * layers
    with torch.no_grad():
        for position in POSITIONS:
            embed = torch.randn(iface.inputs[0].shape, generator=generator)
            pos = torch.tensor([position], dtype=torch.int32)
            want = eager(embed, pos, *caches_eager)
            got = traced(embed, pos, *caches_traced)
            for spec, a, b in zip(iface.outputs, got, want):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=f"{spec.name} at position {position}")
            caches_eager, caches_traced = list(want[n_hidden:]), list(got[n_hidden:])
            # the step wrote exactly its own slot
            assert caches_traced[0][0, :, position].abs().sum() > 0
    written = caches_traced[0][0, 0].abs().sum(-1) > 0
    assert sorted(torch.nonzero(written).flatten().tolist()) == sorted(POSITIONS)
