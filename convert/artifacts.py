"""Write artifacts so that a good one is never replaced by a half-written one.

Each artifact is written to a hidden sibling `.NAME.tmp-PID` and moved into place only when it is
complete: the old artifact is renamed aside (`.NAME.old-PID`), the new one renamed in, the old
one deleted. A run interrupted anywhere leaves either the old or the new artifact at NAME;
`recover` (called at the start of every run) puts an aside-renamed old artifact back if a run
died between the two renames and deletes temporaries of dead runs.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

# test hook: "<artifact name>[:exit|raise|hang]" makes the write of that artifact die, fail, or
# stall (so a test can SIGKILL it) after the temporary is written but before it is moved in
FAIL_HOOK_ENV = "VOXCPM_CONVERT_FAIL_WHILE_WRITING"
# `.STEM.tmp-PID.SUFFIX`: coremltools insists that a package path ends in .mlpackage
_TEMP = re.compile(r"^\.(?P<stem>.+?)\.(?P<kind>tmp|old)-(?P<pid>\d+)(?P<suffix>.*)$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def recover(directory: Path) -> None:
    """Undo what dead runs left in `directory`: restore aside-renamed artifacts, drop temporaries."""
    if not directory.is_dir():
        return
    for entry in sorted(directory.iterdir()):
        match = _TEMP.match(entry.name)
        if not match or _pid_alive(int(match["pid"])) and int(match["pid"]) != os.getpid():
            continue
        final = directory / (match["stem"] + match["suffix"])
        if match["kind"] == "old" and not final.exists():
            entry.rename(final)
        else:
            remove(entry)


def _fail_hook(final: Path, temp: Path) -> None:
    """Simulate a crash after part of an artifact is written (tests only)."""
    target = os.environ.get(FAIL_HOOK_ENV, "")
    name, _, how = target.partition(":")
    if name and name == final.name:
        (temp / "PARTIAL").write_text("simulated crash")
        if how == "raise":
            raise OSError(f"simulated failure while writing {final}")
        if how == "hang":
            time.sleep(600)
        os._exit(3)


def sibling(final: Path, kind: str) -> Path:
    """The hidden temporary (`tmp`) or aside (`old`) sibling of `final` for this process."""
    return final.parent / f".{final.stem}.{kind}-{os.getpid()}{final.suffix}"


def write_atomically(final: Path, write) -> Path:
    """Call `write(temp_path)`, then move the result to `final`, replacing any old one."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = sibling(final, "tmp")
    aside = sibling(final, "old")
    remove(temp)
    try:
        write(temp)
        _fail_hook(final, temp)
    except BaseException:
        remove(temp)
        raise
    if final.exists():
        final.rename(aside)
    temp.rename(final)
    remove(aside)
    return final


def write_json_atomically(final: Path, data) -> Path:
    def write(temp: Path):
        temp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")

    final = Path(final)
    temp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    write(temp)
    os.replace(temp, final)  # atomic for a single file
    return final


# ----------------------------------------------------------------------------- hashing and sizes
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
