"""On-disk cache of generated synthetic sets: one `.pt` file per (set, params, split, size, seed,
resolution, generator version), written atomically (temp file + os.replace).

The directory is `$LKNAS_CACHE` if set, else `~/.cache/lknas/data`. Set `LKNAS_CACHE=off` (or pass
`cache=False` to `build_data`) to disable it. A cache file that cannot be read is regenerated.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def cache_dir() -> Path | None:
    env = os.environ.get("LKNAS_CACHE")
    if env is not None and env.strip().lower() in ("", "0", "off", "none", "false"):
        return None
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lknas" / "data"


def cache_key(key: dict[str, Any]) -> str:
    text = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cache_path(key: dict[str, Any], directory: Path) -> Path:
    stem = f"{key.get('kind', 'data')}-{key.get('split', 'x')}-{key.get('resolution', 0)}"
    return directory / f"{stem}-{cache_key(key)}.pt"


def _save_atomic(obj: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load_or_generate(
    key: dict[str, Any], generate: Callable[[], dict[str, Any]], use_cache: bool = True
) -> tuple[dict[str, Any], bool]:
    """Return `(arrays, hit)`: the cached dict for `key`, or `generate()` stored under it."""
    directory = cache_dir() if use_cache else None
    path = cache_path(key, directory) if directory is not None else None
    if path is not None and path.is_file():
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if obj.get("key") == key:
                return obj, True
        except Exception as e:  # corrupt or foreign file: regenerate
            warnings.warn(f"lknas data cache: ignoring unreadable {path} ({e})", stacklevel=2)
    obj = generate()
    if path is not None:
        try:
            _save_atomic({**obj, "key": key}, path)
        except OSError as e:
            warnings.warn(f"lknas data cache: could not write {path} ({e})", stacklevel=2)
    return obj, False
