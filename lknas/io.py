"""Atomic file writes, and run directories taken back when their command fails.

Atomic writes: a reader never sees a half-written result. The temporary file (made 0600 by
`tempfile.mkstemp`) is given the mode an ordinary `open(path, "w")` would give, 0666 less the
umask, before it replaces the target, so results written either way have the same permissions.
An OS error on the way (no permission, no space, a directory where the file should go) is an
`LknasError` naming the path.

Run directories: `make_run_dir(root, results)` creates a command's output directory and remembers
it when this call created it; `remove_unfinished_run_dirs()` (the CLI calls it when a command
fails) deletes those that still hold none of their `results`, so a command refused after it made
its directory (bad data, too few CPUs on the cluster) leaves nothing behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lknas.errors import LknasError

__all__ = ["atomic_path", "write_text_atomic", "write_json_atomic", "file_mode", "make_run_dir",
           "remove_unfinished_run_dirs", "forget_run_dirs"]


def file_mode() -> int:
    """The mode a newly created ordinary file gets here: 0o666 less the process umask."""
    try:  # Linux >= 4.7 reports the umask without changing it (no window for other threads)
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _cannot_write(path: Path, err: OSError) -> LknasError:
    reason = err.strerror or type(err).__name__
    if isinstance(err, IsADirectoryError) or path.is_dir():
        return LknasError(f"cannot write {path}: it is a directory; give a file name")
    return LknasError(f"cannot write {path}: {reason}; choose another path or free the space / permission")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` (os.replace), on error
    it is removed and `path` is left as it was.

    Raises:
        LknasError: the directory cannot be created, or the file cannot be written or replaced.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise _cannot_write(path, err) from None
    os.close(fd)
    try:
        yield Path(tmp)
        try:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, file_mode())
            os.replace(tmp, path)
        except OSError as err:
            raise _cannot_write(path, err) from None
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write `data` as indented JSON atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


# ----------------------------------------------------------------------------- run directories
@dataclass(frozen=True)
class _Created:
    top: Path  # the highest directory the call created (root itself, or a new parent of it)
    root: Path
    results: tuple[str, ...]


_created: list[_Created] = []


def make_run_dir(root: str | os.PathLike, results: tuple[str, ...]) -> Path:
    """Create `root` (and missing parents); if this call created it, remember it so that
    `remove_unfinished_run_dirs` deletes it while it holds none of `results` (file names in it).

    Raises:
        LknasError: the directory cannot be created (a file in the way, no permission).
    """
    root = Path(root)
    top = None
    for candidate in (root, *root.parents):
        if candidate.exists():
            break
        top = candidate
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LknasError(f"cannot create the directory {root}: {err.strerror or err}; choose another --out") from None
    if top is not None:
        _created.append(_Created(top, root, tuple(results)))
    return root


def remove_unfinished_run_dirs() -> list[Path]:
    """Delete the directories `make_run_dir` created that hold none of their results yet, and the
    parents created with them once empty; returns what was removed. Forgets every record."""
    removed = []
    for rec in reversed(_created):
        if not rec.root.is_dir() or any((rec.root / name).exists() for name in rec.results):
            continue
        shutil.rmtree(rec.root, ignore_errors=True)
        removed.append(rec.root)
        parent = rec.root.parent
        while rec.top != rec.root and parent.is_relative_to(rec.top):
            try:
                parent.rmdir()  # only when empty
            except OSError:
                break
            if parent == rec.top:
                break
            parent = parent.parent
    _created.clear()
    return removed


def forget_run_dirs() -> None:
    """Keep every directory recorded so far (the command succeeded)."""
    _created.clear()
