"""Shared fixtures: tiny random VoxCPM 1.5 checkpoints built once per test session."""
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the hub is unreachable here; never wait on it
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _fixture(tmp_path_factory, name, **kwargs):
    from checkpoint.fixture import build_fixture

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


def _adapter(tmp_path_factory, base, name, **kwargs):
    from checkpoint.adapter_fixture import build_adapter

    return build_adapter(base, tmp_path_factory.mktemp(name), **kwargs).parent


@pytest.fixture(scope="session")
def tiny_adapter(tiny_dir, tmp_path_factory) -> Path:
    """A random LoRA adapter for `tiny_dir` as voxcpm's fine-tuning script writes it (a folder with
    lora_weights.safetensors, plus train.yaml naming the base): r=4, alpha=8 on the LMs, the DiT and the three
    projections, B non-zero, each layer moved ~10 %."""
    return _adapter(tmp_path_factory, tiny_dir, "adapter", r=4, alpha=8, proj=True)


@pytest.fixture(scope="session")
def never_stop_adapter(tiny_never_stop_dir, tmp_path_factory) -> Path:
    """The same kind of adapter for `tiny_never_stop_dir` (other weights, same sizes; its own train.yaml)."""
    return _adapter(tmp_path_factory, tiny_never_stop_dir, "never_adapter", r=4, alpha=8, proj=True, seed=1)


@pytest.fixture(scope="session", autouse=True)
def private_hash_cache(tmp_path_factory) -> Path:
    """Keep the converter's weights-hash cache of test runs out of the user's ~/.cache."""
    home = tmp_path_factory.mktemp("xdg_cache")
    os.environ["XDG_CACHE_HOME"] = str(home)
    return home


def convert_checkpoint(checkpoint: Path, out: Path, precision: str, *options: str) -> Path:
    from convert.cli import main

    assert main(["--model", str(checkpoint), "--precision", precision, "--out", str(out), *options]) == 0
    return out


TEST_PREFILL_CHUNK = 16   # tests: 16 positions per prefill call (default 64), so every prompt spans several


def with_fast_layout(source_out: Path, checkpoint: Path, out: Path, *precisions: str) -> Path:
    """A copy of `source_out` (the published layout) with the fast layout added in `precisions`."""
    shutil.copytree(source_out, out, ignore=shutil.ignore_patterns("validation"))
    for precision in precisions:
        convert_checkpoint(checkpoint, out, precision, "--layout", "fast", "--prefill-chunk", str(TEST_PREFILL_CHUNK))
    return out


@pytest.fixture(scope="session")
def tiny_coreml(tiny_dir, tmp_path_factory) -> Path:
    """`tiny_dir` converted once per session in fp16 and int8; tests that change it take a copy."""
    return convert_checkpoint(tiny_dir, tmp_path_factory.mktemp("tiny_coreml") / "out", "all")


@pytest.fixture(scope="session")
def tiny_never_stop_coreml(tiny_never_stop_dir, tmp_path_factory) -> Path:
    """`tiny_never_stop_dir` converted in fp16 only (so int8 is a precision "not converted")."""
    return convert_checkpoint(tiny_never_stop_dir, tmp_path_factory.mktemp("never_coreml") / "out", "fp16")


@pytest.fixture(scope="session")
def tiny_never_stop_fp32(tiny_never_stop_coreml, tiny_never_stop_dir) -> Path:
    """The FP32 reference build (`--precision fp32`) of `tiny_never_stop_dir`, added to the same OUT
    (OUT/fp32 beside the untouched OUT/fp16), for the generator parity checks at 1e-3."""
    return convert_checkpoint(tiny_never_stop_dir, tiny_never_stop_coreml, "fp32")


STREAM_DECODER = "audio_vae_stream_decoder"


@pytest.fixture(scope="session")
def tiny_stream_out(tiny_never_stop_fp32, tmp_path_factory) -> Path:
    """A copy of `tiny_never_stop_fp32` (the six in fp16 and fp32) plus the optional streaming decoder
    (`--stream-decoder`: contexts in and out) in fp32, fp16 and int8, and the whole decoder in int8 too."""
    import shutil

    from convert.cli import main

    out = tmp_path_factory.mktemp("tiny_stream") / "out"
    shutil.copytree(tiny_never_stop_fp32, out)
    checkpoint = json.loads((out / "manifest.json").read_text())["source"]["checkpoint_dir"]
    for precision in ("fp32", "all"):
        assert main(["--model", checkpoint, "--precision", precision, "--out", str(out),
                     "--components", f"audio_vae_decoder,{STREAM_DECODER}"]) == 0
    return out


@pytest.fixture(scope="session")
def stateful_probe_out(tiny_never_stop_dir, tmp_path_factory) -> Path:
    """The stateful streaming decoder (Core ML states, macOS 15) converted through the whole pipeline in
    fp16, int8 and fp32, as the one component of a probe layout: what a macOS 15 layout that lists it
    gets (tests/helpers.py `probe_layout`)."""
    from convert.cli import main

    from tests.helpers import PROBE_LAYOUT, probe_layout

    out = tmp_path_factory.mktemp("stateful_probe") / "out"
    with probe_layout():
        for precision in ("all", "fp32"):
            assert main(["--model", str(tiny_never_stop_dir), "--precision", precision, "--out", str(out),
                         "--layout", PROBE_LAYOUT]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_both_coreml(tiny_coreml, tiny_dir, tmp_path_factory) -> Path:
    """`tiny_coreml` (published, fp16 + int8) with the fast layout added in fp16 and int8 (context 1024, the
    tiny model's own limit; prefill chunk TEST_PREFILL_CHUNK): both layouts in one OUT."""
    return with_fast_layout(tiny_coreml, tiny_dir, tmp_path_factory.mktemp("tiny_both") / "out", "all")


@pytest.fixture(scope="session")
def never_both_fp32(tiny_never_stop_fp32, tiny_never_stop_dir, tmp_path_factory) -> Path:
    """`tiny_never_stop_fp32` (published fp16 + fp32) with the fast layout added in fp32 and fp16."""
    return with_fast_layout(tiny_never_stop_fp32, tiny_never_stop_dir, tmp_path_factory.mktemp("never_both") / "out",
                            "fp32", "fp16")


@pytest.fixture
def fresh_model(tiny_dir):
    """A new unpatched FP32 model (patching is in place, so tests that patch get their own)."""
    from checkpoint.loading import load_voxcpm

    return load_voxcpm(tiny_dir)
