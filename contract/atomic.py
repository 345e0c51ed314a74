"""Write files and directories so that a good one is never replaced by a half-written one.

Every artifact is written to a hidden sibling `.NAME.tmp-PID` and moved into place only when it is
complete. A file replaces its old version with one `os.replace` (atomic). A directory (a
.mlpackage) cannot be swapped atomically: the old one is renamed aside (`.NAME.old-PID`), the new
one renamed in, the old one deleted; a run that dies between the two renames leaves the old one
aside, and `recover` (called at the start of every run) puts it back and deletes the temporaries of
dead runs. Every command of the toolkit writes through here.
"""
from __future__ import annotations

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
        if temp.is_dir():
            (temp / "PARTIAL").write_text("simulated crash")
        if how == "raise":
            raise OSError(f"simulated failure while writing {final}")
        if how == "hang":
            time.sleep(600)
        os._exit(3)


def sibling(final: Path, kind: str) -> Path:
    """The hidden temporary (`tmp`) or aside (`old`) sibling of `final` for this process."""
    return final.parent / f".{final.stem}.{kind}-{os.getpid()}{final.suffix}"


def write_atomically(final, write) -> Path:
    """Call `write(temp_path)` (it creates a file or a directory there), then move it to `final`."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = sibling(final, "tmp")
    remove(temp)
    try:
        write(temp)
        _fail_hook(final, temp)
    except BaseException:
        remove(temp)
        raise
    if temp.is_dir():
        aside = sibling(final, "old")
        if final.exists():
            final.rename(aside)
        temp.rename(final)
        remove(aside)
    else:
        os.replace(temp, final)
    return final


def write_text_atomically(final, text: str) -> Path:
    return write_atomically(final, lambda temp: Path(temp).write_text(text, encoding="utf-8"))


def write_json_atomically(final, data, indent: int = 2) -> Path:
    return write_text_atomically(final, json.dumps(data, indent=indent, default=str) + "\n")
