"""The types every data set shares: `DataError`, `DataBundle` and the parsed data-set spec."""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from typing import Any

from lknas.errors import LknasError


class DataError(LknasError, ValueError):
    """A data-set name, option or path the user gave is wrong; the message says what is valid."""


@dataclass
class DataBundle:
    """Everything a trainer needs from a data set.

    `train` yields `(x, y)` batches (x float32 NCHW normalized, y int64, both on `device`), is
    re-iterable and reshuffled each epoch (epoch e uses seed + e), drops the last partial batch;
    `len(train)` is the number of batches per epoch. `val` is in a fixed order and keeps the last
    partial batch.
    """

    name: str  # the kind, one of KINDS: "pointer", "match", "pathfinder", "shapes", "imagefolder", ...
    spec: str  # the canonical spec string, e.g. "pathfinder:difficulty=hard,distractors=3"
    train: Any
    val: Any
    num_classes: int
    in_chans: int
    resolution: int
    train_size: int
    val_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{self.spec} @ {self.resolution}x{self.resolution}: {self.num_classes} classes, "
            f"{self.in_chans} ch, train {self.train_size} ({len(self.train)} batches/epoch), "
            f"val {self.val_size}"
        )


SYNTHETIC_KINDS = ("pathfinder", "pointer", "match", "shapes")
PATH_KINDS = ("imagefolder", "cifar10", "cifar100")
KINDS = SYNTHETIC_KINDS + PATH_KINDS

NAME_SYNTAX = "valid data sets: " + ", ".join(
    [f"'{kind}[:key=value,...]'" for kind in SYNTHETIC_KINDS] + [f"'{kind}:PATH'" for kind in PATH_KINDS])


@dataclass(frozen=True)
class DataSpec:
    kind: str
    path: str | None = None
    options: dict[str, str] = field(default_factory=dict)


def parse_spec(name: str) -> DataSpec:
    """Split a data-set name into (kind, path or options).

    `pathfinder`, `pathfinder:difficulty=hard,train=2000`, `pathfinder:hard` (a bare word is the
    difficulty), `shapes:classes=6`; `imagefolder:PATH`, `cifar10:PATH`, `cifar100:PATH` (everything
    after the first colon is the path, `~` expanded).
    """
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"data set name must be a non-empty string, got {name!r}; {NAME_SYNTAX}")
    name = name.strip()
    kind, sep, rest = name.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        close = difflib.get_close_matches(kind, KINDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(f"unknown data set {name!r}{hint}; {NAME_SYNTAX}")
    if kind in PATH_KINDS:
        if not rest.strip():
            raise DataError(f"{kind} needs a path: '{kind}:PATH'")
        return DataSpec(kind, path=os.path.expanduser(rest.strip()))
    options: dict[str, str] = {}
    for token in filter(None, (t.strip() for t in rest.split(","))):
        key, eq, value = token.partition("=")
        if not eq:
            key, value = "", token  # a bare word: the data set's positional option
        key, value = key.strip().lower(), value.strip()
        if key in options:
            raise DataError(f"{name!r}: option {key or value!r} given twice")
        options[key] = value
    return DataSpec(kind, options=options)


def balanced_chunks(n: int, seed: int, split: int, stream: tuple[int, ...], render, chunk: int = 128) -> dict:
    """`n` two-class samples drawn in chunks of `chunk`, each balanced and from its own stream
    (seed, split, k, *stream), so a smaller n is a prefix of a larger one: x (n,1,R,R) uint8 from
    `render(rng, labels)` (chunk, R, R), y (n,) int64."""
    import numpy as np

    xs, ys = [], []
    for k in range(-(-n // chunk)):
        rng = np.random.default_rng([seed, split, k, *stream])
        labels = rng.permutation(np.arange(chunk) % 2)
        xs.append(render(rng, labels))
        ys.append(labels)
    return {"x": np.concatenate(xs)[:n, None], "y": np.concatenate(ys)[:n].astype(np.int64)}
