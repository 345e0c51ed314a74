"""Accuracy metrics shared by tests, validation and benchmarks."""
import numpy as np


def compare(actual, expected):
    """Compare two arrays of the same shape.

    Returns a dict with ``corr`` (Pearson correlation of the flattened
    values, 1.0 when both are constant and equal), ``rel_l2``
    (||a-e|| / ||e||), ``max_abs`` (largest absolute difference) and
    ``finite`` (no NaN/inf in ``actual``). Computed in float64.
    """
    a = np.asarray(actual, dtype=np.float64).ravel()
    e = np.asarray(expected, dtype=np.float64).ravel()
    if a.shape != e.shape:
        raise ValueError(f"shape mismatch: {np.shape(actual)} vs {np.shape(expected)}")
    finite = bool(np.isfinite(a).all())
    diff = a - e
    max_abs = float(np.max(np.abs(diff))) if a.size else 0.0
    norm_e = float(np.linalg.norm(e))
    norm_d = float(np.linalg.norm(diff))
    rel_l2 = norm_d / norm_e if norm_e > 0 else (0.0 if norm_d == 0 else float("inf"))
    return {"corr": _corr(a, e), "rel_l2": rel_l2, "max_abs": max_abs, "finite": finite}


def _corr(a, e):
    if a.size < 2:
        return 1.0 if np.array_equal(a, e) else 0.0
    ac, ec = a - a.mean(), e - e.mean()
    den = np.linalg.norm(ac) * np.linalg.norm(ec)
    if den == 0:
        # constant vectors: correlation is undefined; call equal ones perfect
        return 1.0 if np.allclose(a, e) else 0.0
    return float(np.dot(ac, ec) / den)


def passes(metrics, min_corr, max_rel_l2):
    """True when a ``compare`` result meets the gate (the caller's: the runtime holds no policy)."""
    return bool(metrics["finite"] and metrics["corr"] >= min_corr and metrics["rel_l2"] <= max_rel_l2)
