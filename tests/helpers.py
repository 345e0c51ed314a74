"""Small comparison helpers for tests."""
import numpy as np


def as_numpy(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def max_rel_error(actual, expected) -> float:
    """max |a - e| / max |e| (scale-aware, robust to zeros)."""
    a, e = as_numpy(actual).astype(np.float64), as_numpy(expected).astype(np.float64)
    assert a.shape == e.shape, (a.shape, e.shape)
    return float(np.abs(a - e).max() / max(np.abs(e).max(), 1e-12))
