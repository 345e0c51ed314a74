"""Shared fixtures: tiny random VoxCPM 1.5 checkpoints built once per test session."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the hub is unreachable here; never wait on it
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _fixture(tmp_path_factory, name, **kwargs):
    from patches.fixture import build_fixture

    return build_fixture(tmp_path_factory.mktemp(name), **kwargs)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """Random stop head (stops early), MuP on."""
    return _fixture(tmp_path_factory, "tiny")


@pytest.fixture(scope="session")
def tiny_never_stop_dir(tmp_path_factory) -> Path:
    """The stop head never fires: generation runs to its length limit."""
    return _fixture(tmp_path_factory, "tiny_never", stop_mode="never", seed=1)


@pytest.fixture(scope="session")
def tiny_no_mup_dir(tmp_path_factory) -> Path:
    return _fixture(tmp_path_factory, "tiny_nomup", use_mup=False, seed=2)


@pytest.fixture
def fresh_model(tiny_dir):
    """A new unpatched FP32 model (patching is in place, so tests that patch get their own)."""
    from patches.loading import load_voxcpm

    return load_voxcpm(tiny_dir)
