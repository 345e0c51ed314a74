"""The tiny conversions (shared, tests/conftest.py), a 7 s stereo 48 kHz prompt, and the FP32
reference pipelines to compare with."""

import numpy as np
import pytest

from tests.helpers import write_stereo_prompt

PROMPT_TEXT = "This is the prompt transcript."


@pytest.fixture(scope="session")
def never_out(tiny_never_stop_coreml):
    """fp16 only: int8 is a precision that was not converted (tests/conftest.py)."""
    return tiny_never_stop_coreml


@pytest.fixture(scope="session")
def stop_out(tiny_coreml):
    return tiny_coreml


@pytest.fixture(scope="session")
def prompt7_wav(tmp_path_factory):
    """7 s of stereo 48 kHz 'speech-like' audio: two 5 s encoder windows, not the model rate, not whole patches."""
    return write_stereo_prompt(tmp_path_factory.mktemp("prompt") / "prompt7.wav", 7.0)


@pytest.fixture(scope="session")
def ref_never(tiny_never_stop_dir):
    from checkpoint.loading import load_voxcpm
    from reference.generator import ReferencePipeline

    return ReferencePipeline(load_voxcpm(tiny_never_stop_dir))


@pytest.fixture(scope="session")
def ref_stop(tiny_dir):
    from checkpoint.loading import load_voxcpm
    from reference.generator import ReferencePipeline

    return ReferencePipeline(load_voxcpm(tiny_dir))


def shared_noise(seed: int, feat_dim: int = 64, patch: int = 4, count: int = 64):
    """The same noise sequence twice: as torch tensors for the reference, as arrays for the generator."""
    import torch

    rng = np.random.default_rng(seed)
    draws = [rng.standard_normal((1, feat_dim, patch)).astype(np.float32) for _ in range(count)]
    torch_iter, numpy_iter = iter(draws), iter(draws)
    return (lambda: torch.from_numpy(next(torch_iter).copy())), (lambda: next(numpy_iter).copy())


def rel_l2(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-12))
