"""One tiny-fixture conversion (fp16 and int8) per test session, shared by every convert test."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_out(tiny_coreml) -> Path:
    """The session's one tiny conversion (tests/conftest.py)."""
    return tiny_coreml


@pytest.fixture(scope="session")
def tiny_config(tiny_dir) -> dict:
    return json.loads((Path(tiny_dir) / "config.json").read_text())


@pytest.fixture(scope="session")
def tiny_interfaces(tiny_config):
    from contract.published import declare

    return declare(tiny_config)


@pytest.fixture
def copy_of_out(tiny_out, tmp_path) -> Path:
    """A private copy of the converted OUT that a test may rewrite (its manifest stays valid)."""
    out = tmp_path / "out"
    shutil.copytree(tiny_out, out, symlinks=True)
    return out


def run_convert(*args, env_extra=None, timeout=600) -> subprocess.CompletedProcess:
    """`python -m convert ARGS` in a fresh interpreter, as a user would run it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "convert", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def artifact_hashes(out: Path) -> dict[str, str]:
    """sha256 of every package and constants directory under OUT (not the manifest)."""
    from convert.hashing import tree_sha256

    found = {}
    for sub in ("fp16", "int8"):
        for package in sorted((out / sub).glob("[!.]*.mlpackage")):  # not the hidden temporaries
            found[f"{sub}/{package.name}"] = tree_sha256(package)
    for name in ("constants", "constants_bin"):
        found[name] = tree_sha256(out / name)
    return found


def leftovers(out: Path) -> list[str]:
    """Hidden temporaries a run may leave behind."""
    return sorted(str(p.relative_to(out)) for p in out.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name
                  or p.name.startswith(".work-"))
