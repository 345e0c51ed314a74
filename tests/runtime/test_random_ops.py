"""Random ops (kernels/random_ops.py): shapes, degenerate probabilities, seeds, sample frequencies."""
import numpy as np
import pytest
import coremltools as ct
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import types

from .helpers import run_program


def _run(body, x=np.zeros(1, np.float32)):
    return run_program([("x", x.shape, types.fp32)], body, {"x": x}, ct.target.iOS17)


def test_bernoulli_degenerate_and_frequency():
    ones, zeros, half = _run(lambda x: [mb.random_bernoulli(shape=np.array([2, 3], np.int32), prob=1.0),
                                        mb.random_bernoulli(shape=np.array([3, 1], np.int32), prob=0.0),
                                        mb.random_bernoulli(shape=np.array([20000], np.int32), prob=0.3, seed=1)])
    np.testing.assert_array_equal(ones, np.ones((2, 3)))
    np.testing.assert_array_equal(zeros, np.zeros((3, 1)))
    assert abs(half.mean() - 0.3) < 0.02


@pytest.mark.parametrize("op,kw,mean,std", [("random_normal", dict(mean=2.0, stddev=0.5), 2.0, 0.5),
                                            ("random_uniform", dict(low=-1.0, high=3.0), 1.0, 4 / np.sqrt(12))])
def test_normal_and_uniform_moments_and_seed(op, kw, mean, std):
    shape = np.array([50000], np.int32)
    a, b, c = _run(lambda x: [getattr(mb, op)(shape=shape, seed=7, **kw), getattr(mb, op)(shape=shape, seed=7, **kw),
                              getattr(mb, op)(shape=shape, seed=8, **kw)])
    assert abs(a.mean() - mean) < 0.02 and abs(a.std() - std) < 0.02
    np.testing.assert_array_equal(a, b)  # the same seed repeats
    assert not np.array_equal(a, c)
    if op == "random_uniform":
        assert a.min() >= -1.0 and a.max() < 3.0


@pytest.mark.parametrize("mode", ["logits", "probs"])
def test_categorical_frequencies(mode):
    p = np.array([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]], np.float32)
    x = np.log(p) if mode == "logits" else p
    (draws,) = _run(lambda v: mb.random_categorical(x=v, size=20000, mode=mode, seed=3), x)
    assert draws.shape == (2, 20000)
    for row, probs in zip(draws, p):
        np.testing.assert_allclose(np.bincount(row.astype(int), minlength=3) / 20000, probs, atol=0.02)
