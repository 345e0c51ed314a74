"""OUT/manifest.json: where every artifact came from, what it is, and when it must be redone.

An artifact is redone when its *inputs key* changes: sha256 of the checkpoint's weight files,
the settings that shape it (component, precision, max context; a LoRA adapter's sha256 and
settings) and the toolkit version (the sources of convert/ and patches/, plus coremltools and
torch versions).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from contract.atomic import write_json_atomically

from .hashing import file_sha256

ROOT = Path(__file__).resolve().parents[1]
BUILD_SOURCES = ("converters.py", "quantize.py", "constants.py", "packaging.py")
# in contract/, checkpoint/ and patches/, every module shapes the artifacts but these
NOT_BUILD_SOURCES = {"__init__.py", "cli.py", "atomic.py", "artifacts.py", "audio.py", "fixture.py",
                     "adapter_fixture.py", "tiny_tokenizer.py", "prove.py"}
WEIGHT_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "audiovae.pth", "audiovae.safetensors")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def hash_cache_path() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "voxcpm-coreml" / "weights-sha256.json"


def weights_sha256(checkpoint: Path) -> dict[str, str]:
    """sha256 of each weight file; cached by (path, size, mtime) since the model is 3.2 GB."""
    cache_path = hash_cache_path()
    cache = _read_json(cache_path)
    result, changed = {}, False
    for name in WEIGHT_FILES:
        path = Path(checkpoint) / name
        if not path.is_file():
            continue
        stat = path.stat()
        key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        if key not in cache:
            cache[key], changed = file_sha256(path), True
        result[name] = cache[key]
    if changed:
        try:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomically(cache_path, cache)
        except OSError:
            pass  # the cache only saves time
    return result


def _sources_sha256() -> str:
    digest = hashlib.sha256()
    # only the code that shapes the artifacts: a CLI or report change does not force a redo
    paths = [ROOT / "convert" / name for name in BUILD_SOURCES]
    for package in ("contract", "checkpoint", "patches"):
        paths += [p for p in sorted((ROOT / package).glob("*.py")) if p.name not in NOT_BUILD_SOURCES]
    for path in paths:
        digest.update(f"{path.parent.name}/{path.name}".encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _git_commit() -> str | None:
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "contract", "checkpoint",
                                "convert", "patches"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("+dirty" if dirty else "")) or None


def _version(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return None


def toolkit_info() -> dict:
    return {"name": "voxcpm-coreml", "version": _version("voxcpm-coreml") or "0.1.0",
            "sources_sha256": _sources_sha256(), "git_commit": _git_commit(),
            "python": sys.version.split()[0], "coremltools": _version("coremltools"), "torch": _version("torch"),
            "numpy": _version("numpy"), "voxcpm": _version("voxcpm")}


def inputs_key(weights: dict, toolkit: dict, **settings) -> str:
    """What an artifact depends on, as one hash."""
    material = {"weights": weights, "settings": settings,
                "toolkit": {k: toolkit[k] for k in ("sources_sha256", "coremltools", "torch", "numpy")}}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


class Manifest:
    """OUT/manifest.json, saved after every artifact so an interrupted run keeps what it finished."""

    def __init__(self, out: Path):
        self.path = Path(out) / "manifest.json"
        self.data = _read_json(self.path)
        self.data.setdefault("artifacts", {})

    def artifact(self, key: str) -> dict | None:
        return self.data["artifacts"].get(key)

    def record(self, key: str, entry: dict) -> None:
        self.data["artifacts"][key] = entry
        self.save()

    def set_source(self, source: dict, toolkit: dict) -> None:
        self.data["source"], self.data["toolkit"] = source, toolkit

    def save(self) -> None:
        self.data["artifacts"] = dict(sorted(self.data["artifacts"].items()))
        write_json_atomically(self.path, self.data)
