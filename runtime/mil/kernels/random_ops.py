"""random_bernoulli / random_categorical / random_normal / random_uniform.

Core ML's generator is not public, so the values cannot equal Core ML's; the distributions do.
A ``seed`` other than -1 makes a run repeatable (numpy's PCG64 seeded with it); -1 draws fresh.
coremltools' own tests check exactly this much: degenerate probabilities (0 and 1) and sample
frequencies.
"""
import numpy as np

from ..registry import kernel
from ._util import F32, f32, ints


def _rng(a):
    seed = int(a.get("seed", -1))
    return np.random.default_rng(None if seed == -1 else seed)


@kernel("random_bernoulli", fresh=True)
def random_bernoulli(a, op):
    return (_rng(a).random(ints(a["shape"])) < float(a.get("prob", 0.5))).astype(F32)


@kernel("random_normal", fresh=True)
def random_normal(a, op):
    return _rng(a).normal(float(a.get("mean", 0.0)), float(a.get("stddev", 1.0)), ints(a["shape"])).astype(F32)


@kernel("random_uniform", fresh=True)
def random_uniform(a, op):
    low, high = float(a.get("low", 0.0)), float(a.get("high", 1.0))
    return (low + (high - low) * _rng(a).random(ints(a["shape"]))).astype(F32)


@kernel("random_categorical", fresh=True)
def random_categorical(a, op):
    """``size`` class indices (as the input's float type) per distribution of the last axis."""
    x = f32(a["x"]).astype(np.float64)
    logits = np.log(x) if a.get("mode", "logits") == "probs" else x
    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
    p = (p / p.sum(axis=-1, keepdims=True)).reshape(-1, x.shape[-1])
    rng, size = _rng(a), int(a.get("size", 1))
    draws = [rng.choice(x.shape[-1], size=size, p=row) for row in p]
    return np.asarray(draws, F32).reshape(x.shape[:-1] + (size,))
