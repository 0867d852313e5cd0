"""Limits on the shape of a raw space value, checked before validation walks it.

A YAML file can describe values far larger than itself: aliases (`*name`) share one mapping or
list many times (the "billion laughs"), an alias inside its own anchor makes a cycle, and
brackets nest without end. Validation compares, prints and hashes values, so it would hang, recurse
without end or exhaust memory on them. `check_structure` measures the value once (each shared
part once, so in time linear in the file) and refuses it with one problem when it nests deeper
than `MAX_NESTING`, holds more than `MAX_NODES` values once aliases are expanded, or contains
itself.
"""
from __future__ import annotations

from typing import Any

from lknas.errors import Problem, SpaceError
from lknas.limits import MAX_NESTING, MAX_NODES


class _Refused(Exception):
    def __init__(self, path: str, message: str):
        self.path, self.message = path, message
        super().__init__(message)


def check_structure(data: Any, file: str = "<dict>") -> None:
    """Raise SpaceError if `data` nests too deep, is too large with aliases expanded, or is cyclic."""
    try:
        _measure(data, "", 0, {}, set())
    except _Refused as err:
        raise SpaceError([Problem(file, err.path, err.message)]) from None


def _child(path: str, key: Any) -> str:
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{path}[{key}]"
    text = key if isinstance(key, str) else repr(type(key).__name__)
    text = text if len(text) <= 40 else text[:40] + "..."
    return f"{path}.{text}" if path else text


def _measure(obj: Any, path: str, depth: int, memo: dict[int, tuple[int, int]], on_path: set[int]) -> tuple[int, int]:
    """(values in `obj` with aliases expanded, nesting height of `obj`)."""
    if not isinstance(obj, (dict, list, tuple)):
        return 1, 0
    key = id(obj)
    if key in on_path:
        raise _Refused(path, "this value contains itself (a YAML alias inside its own anchor); "
                             "a space file must be a tree")
    if key in memo:
        nodes, height = memo[key]
        if depth + height > MAX_NESTING:
            raise _Refused(path, f"mappings and lists nest more than {MAX_NESTING} levels deep here")
        return nodes, height
    if depth >= MAX_NESTING:
        raise _Refused(path, f"mappings and lists nest more than {MAX_NESTING} levels deep here")
    on_path.add(key)
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    nodes, height = 1, 0
    for k, value in items:
        n, h = _measure(value, _child(path, k), depth + 1, memo, on_path)
        nodes += n + (isinstance(obj, dict))
        height = max(height, h + 1)
        if nodes > MAX_NODES:
            raise _Refused(path, f"holds more than {MAX_NODES:,} values once its YAML aliases (*name) are "
                                 "expanded; a space file describes one space, not a data set")
    on_path.discard(key)
    memo[key] = (nodes, height)
    return nodes, height
