"""Content hashes and sizes of artifacts: a package is its files, so its hash is theirs.

A directory's hash is the sha256 of its (relative path, file sha256) list, so two packages with the
same files in the same places hash alike wherever they live.
"""
from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def tree_files(path: Path) -> list[Path]:
    path = Path(path)
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def tree_sha256(path: Path) -> str:
    """sha256 of a file, or of a directory's (relative path, file sha256) list."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in tree_files(path):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def tree_size(path: Path) -> int:
    return sum(f.stat().st_size for f in tree_files(path))
