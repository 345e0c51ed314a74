"""Peephole fusions (runtime/mil/fuse.py): same values as the unfused ops, and only where safe."""
import tracemalloc

import numpy as np
import pytest
import coremltools as ct
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import types

from runtime.mil import MilModel
from runtime.mil.fuse import grouped_matmul

from .helpers import TINY


def _expanded(kv, perm, head, repeats):
    return np.repeat(np.transpose(kv, perm), repeats, axis=head)


@pytest.mark.parametrize("shape,perm,transpose_y,m", [
    ((1, 2, 8, 4), [0, 1, 2, 3], True, 1),  # decode: q [1,4,1,4] . k^T
    ((1, 2, 8, 4), [0, 1, 2, 3], False, 3),  # probabilities . v, [.., m=3, 8] @ [.., 8, 4]
    ((2, 1, 8, 4), [1, 0, 2, 3], True, 5),  # heads first, as coremltools lays them out
    ((1, 3, 2, 6, 4), [0, 1, 2, 3, 4], True, 2),  # a batch axis after the head axis
])
def test_grouped_matmul_equals_repeat_then_matmul(shape, perm, transpose_y, m):
    rng = np.random.default_rng(0)
    kv = rng.standard_normal(shape).astype(np.float32)
    head, repeats = 1, 3
    k = _expanded(kv, perm, head, repeats)
    k_op = np.swapaxes(k, -1, -2) if transpose_y else k
    q = rng.standard_normal(k.shape[:-2] + (m, k_op.shape[-2])).astype(np.float32)
    want = np.matmul(q, k_op)
    got = grouped_matmul(q, kv, perm, head, repeats, transpose_x=False, transpose_y=transpose_y)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_grouped_matmul_transpose_x_and_broadcast_fallback():
    rng = np.random.default_rng(1)
    kv = rng.standard_normal((1, 2, 8, 4)).astype(np.float32)
    k = _expanded(kv, [0, 1, 2, 3], 1, 2)
    q_t = rng.standard_normal((1, 4, 4, 3)).astype(np.float32)  # stored transposed
    got = grouped_matmul(q_t, kv, [0, 1, 2, 3], 1, 2, transpose_x=True, transpose_y=True)
    np.testing.assert_allclose(got, np.swapaxes(q_t, -1, -2) @ np.swapaxes(k, -1, -2), rtol=1e-5, atol=1e-5)
    q_b = rng.standard_normal((3, 1, 1, 1, 4)).astype(np.float32)  # broadcasts against k instead
    got = grouped_matmul(q_b, kv, [0, 1, 2, 3], 1, 2, transpose_x=False, transpose_y=True)
    np.testing.assert_allclose(got, q_b @ np.swapaxes(k, -1, -2), rtol=1e-5, atol=1e-5)


def _gqa_program(extra_output=False, scatter_between=False):
    """kv [1,2,8,4] expanded to 4 heads the way coremltools lowers repeat_interleave, then q . k^T."""

    @mb.program(input_specs=[mb.TensorSpec((1, 2, 8, 4)), mb.TensorSpec((1, 4, 1, 4))], opset_version=ct.target.iOS17)
    def prog(kv, q):
        heads_first = mb.transpose(x=kv, perm=[1, 0, 2, 3])
        tiled = mb.tile(x=heads_first, reps=[2, 1, 1, 1])
        split = mb.reshape(x=tiled, shape=[2, 2, 1, 8, 4])
        swapped = mb.transpose(x=split, perm=[1, 0, 2, 3, 4])
        merged = mb.reshape(x=swapped, shape=[4, 1, 8, 4])
        k = mb.transpose(x=merged, perm=[1, 0, 2, 3])
        outs = []
        if scatter_between:  # overwrites kv after the tile read it, before the matmul runs
            outs.append(mb.scatter(data=kv, indices=np.array([0], np.int32), updates=np.zeros((1, 2, 8, 4), np.float32),
                                   axis=0, mode="update"))
        scores = mb.matmul(x=q, y=k, transpose_y=True)
        return tuple([scores] + outs + ([split] if extra_output else []))

    return prog


def _feed(seed=0):
    rng = np.random.default_rng(seed)
    return {"kv": rng.standard_normal((1, 2, 8, 4)).astype(np.float32),
            "q": rng.standard_normal((1, 4, 1, 4)).astype(np.float32)}


def _labels(model):
    return [s.info.op_type for s in model._plan.steps]


def _reference_scores(feed):
    return feed["q"] @ np.swapaxes(np.repeat(feed["kv"], 2, axis=1), -1, -2)


def test_gqa_chain_becomes_one_grouped_matmul():
    model = MilModel.from_program(_gqa_program(), compute="fp32")
    assert sum(label.startswith("grouped matmul") for label in _labels(model)) == 1
    assert not any(label in ("tile", "matmul") for label in _labels(model))
    feed = _feed()
    fused = next(iter(model.predict(feed).values()))
    unfused = model.trace(feed)  # traces run one step per op
    np.testing.assert_allclose(fused, _reference_scores(feed), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fused, unfused[model.outputs[0].name], rtol=1e-6, atol=1e-6)
    assert any(name.startswith("tile") for name in unfused)  # the trace really ran the unfused ops


def test_an_intermediate_read_elsewhere_is_not_fused():
    model = MilModel.from_program(_gqa_program(extra_output=True), compute="fp32")
    assert "tile" in _labels(model) and "matmul" in _labels(model)
    feed = _feed()
    np.testing.assert_allclose(next(iter(model.predict(feed).values())), _reference_scores(feed), rtol=1e-6, atol=1e-6)


def test_fused_kernel_reads_its_input_before_any_in_place_write():
    # The fused matmul runs at the matmul's position, after the scatter; had the scatter been
    # allowed to write into kv in place, the scores would be computed from zeros.
    model = MilModel.from_program(_gqa_program(scatter_between=True), compute="fp32")
    assert any(label.startswith("grouped matmul") for label in _labels(model))
    feed = _feed(3)
    kv_before = feed["kv"].copy()
    scores, overwritten = model.predict(feed).values()
    np.testing.assert_allclose(scores, _reference_scores(feed), rtol=1e-6, atol=1e-6)
    assert np.all(overwritten[0] == 0) and np.array_equal(feed["kv"], kv_before)


def test_converted_decoder_is_fused_and_matches_its_trace(built):
    _, path = built("decoder_trace")
    model = MilModel.from_path(path, compute="fp32")
    fused_steps = [label for label in _labels(model) if label.startswith("grouped matmul")]
    assert len(fused_steps) == 2 * TINY["layers"]  # q.k^T and p.v in every layer
    feed = {d.name: np.random.default_rng(5).standard_normal(d.shape).astype(np.float32) for d in model.inputs}
    feed["position"] = np.array([7], np.int32)
    out, _ = model.predict(feed, return_intermediates=True)  # unfused
    fused = model.predict(feed)
    for name, value in out.items():
        np.testing.assert_allclose(fused[name], value, rtol=1e-5, atol=1e-5)



# --- elementwise chains ------------------------------------------------------------------------

C, T = 8, 70_000  # 560k elements: several chunks along T


def _snake_program(shape=(1, C, T), read_twice=False, break_with=None):
    """Snake as the VAE converts it: x + 1/alpha * sin(alpha * x)^2, per-channel alpha, fp16."""
    rng = np.random.default_rng(0)
    alpha = (0.5 + rng.random((1, shape[1], 1))).astype(np.float16)

    @mb.program(input_specs=[mb.TensorSpec(shape, dtype=types.fp16)], opset_version=ct.target.iOS17)
    def prog(x):
        a = mb.mul(x=alpha, y=x)
        s = mb.sin(x=a)
        if break_with == "softmax":  # not elementwise: splits the run in two
            s = mb.softmax(x=s, axis=-1)
        p = mb.pow(x=s, y=np.float16(2.0))
        m = mb.mul(x=(1 / alpha).astype(np.float16), y=p)
        out = mb.add(x=x, y=m)
        return (out, mb.reduce_max(x=s, axes=[-1])) if read_twice else out

    return prog


def _chain_labels(model):
    return [label for label in _labels(model) if label.startswith("elementwise chain")]


def test_an_elementwise_chain_runs_in_chunks_and_equals_the_unfused_ops_bit_for_bit():
    model = MilModel.from_program(_snake_program(), compute="fp16")
    assert _chain_labels(model) == ["elementwise chain (mul+sin+pow+mul+add)"]
    x = np.random.default_rng(1).standard_normal((1, C, T)).astype(np.float32)
    name = model.outputs[0].name
    fused = model.predict({"x": x})[name]
    unfused = model.trace({"x": x}, names=[name])[name]
    assert np.array_equal(fused.view(np.uint16), unfused.astype(np.float16).view(np.uint16))


def test_elementwise_chains_stop_at_a_value_read_elsewhere_and_at_other_ops():
    read_twice = MilModel.from_program(_snake_program(shape=(1, 4, 64), read_twice=True), compute="fp16")
    # sin's output is read twice: it ends one chain (it is materialised) and the next starts after it
    assert _chain_labels(read_twice) == ["elementwise chain (mul+sin)", "elementwise chain (pow+mul+add)"]
    split = MilModel.from_program(_snake_program(shape=(1, 4, 64), break_with="softmax"), compute="fp16")
    assert _chain_labels(split) == ["elementwise chain (mul+sin)", "elementwise chain (pow+mul+add)"]
    for model in (read_twice, split):
        x = {"x": np.random.default_rng(2).standard_normal((1, 4, 64)).astype(np.float32)}
        fused, unfused = model.predict(x), model.trace(x)
        for name, value in fused.items():
            np.testing.assert_array_equal(value, unfused[name].reshape(value.shape))


def test_a_chunked_chain_holds_one_output_not_one_array_per_op():
    model = MilModel.from_program(_snake_program(), compute="fp32")
    x = np.random.default_rng(3).standard_normal((1, C, T)).astype(np.float32)
    tracemalloc.start()
    try:
        model._plan.run({"x": x})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * x.nbytes, f"peak {peak / x.nbytes:.1f}x the input: intermediates are whole arrays"


def test_a_big_chain_runs_on_torchs_threads_and_equals_the_unfused_ops_bit_for_bit(monkeypatch):
    import threading

    import torch

    from runtime.mil import fuse

    shape = (1, C, 300_000)   # 2.4M elements: three slices of <= 1M over two threads
    model = MilModel.from_program(_snake_program(shape=shape), compute="fp16")
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    name = model.outputs[0].name
    seen, run = set(), fuse.ChunkedChain._run
    monkeypatch.setattr(fuse.ChunkedChain, "_run", lambda self, *a: seen.add(threading.current_thread().name)
                        or run(self, *a))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fused = model.predict({"x": x})[name]
    finally:
        torch.set_num_threads(threads)
    assert len(seen) == 2 and all(n.startswith("mil-chain") for n in seen), seen
    unfused = model.trace({"x": x}, names=[name])[name]
    assert np.array_equal(fused.view(np.uint16), unfused.astype(np.float16).view(np.uint16))
