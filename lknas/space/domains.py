"""Domains of a search space: Constant, Choice, IntRange and FloatRange.

In a space file, a mapping with exactly one of the keys `choice`, `int` or `float` is a domain:

    kernel: {choice: [31, 51]}
    depth: {int: [2, 9], step: 1}
    lr: {float: [1.0e-4, 1.0e-2], log: true}

Anything else is a constant. Every domain can draw a value from a seeded `random.Random`
(`sample`) or ask an Optuna trial for one (`suggest`), always with the same distribution for a
given parameter name, as Optuna requires.
"""
from __future__ import annotations

import difflib
import json
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lknas.limits import MAX_CHOICES

if TYPE_CHECKING:  # Optuna is imported by the search, not to validate a space
    from optuna.trial import BaseTrial

DOMAIN_KEYS = ("choice", "int", "float")
DOMAIN_EXTRA_KEYS = {"int": ("step",), "float": ("log",), "choice": ()}
_PRIMITIVES = (type(None), bool, int, float, str)
SHOWN_ITEMS = 8  # items of a list shown in a message
SHOWN_CHARS = 80  # characters of a string shown in a message


def short(value: Any) -> str:
    """A value for a message, bounded in length whatever its size (a 5000-digit integer, a list of
    200,000 values, a megabyte of text)."""
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "null"
    if isinstance(value, int) and value.bit_length() > 64:
        digits = int(value.bit_length() * math.log10(2)) + 1
        return f"{'-' if value < 0 else ''}an integer of about {digits} digits"
    if isinstance(value, str):
        return repr(value) if len(value) <= SHOWN_CHARS else repr(value[:SHOWN_CHARS]) + f"... ({len(value)} chars)"
    if isinstance(value, (list, tuple)):
        items = ", ".join(short(v) for v in value[:SHOWN_ITEMS])
        more = f", ... ({len(value)} values)" if len(value) > SHOWN_ITEMS else ""
        return f"[{items}{more}]"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, float):
        return repr(value)
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


class Domain:
    """A set of values a key may take."""

    def sample(self, rng: random.Random) -> Any:
        raise NotImplementedError

    def suggest(self, trial: BaseTrial, name: str) -> Any:
        raise NotImplementedError

    def values(self) -> list[Any] | None:
        """Every value, in order, for finite domains; None for continuous ones."""
        raise NotImplementedError

    def size(self) -> int | None:
        """The number of values; None for continuous domains."""
        vals = self.values()
        return None if vals is None else len(vals)

    def min(self) -> Any:
        return min(self.values())  # type: ignore[arg-type]

    def max(self) -> Any:
        return max(self.values())  # type: ignore[arg-type]

    @property
    def is_constant(self) -> bool:
        return False

    @property
    def is_finite(self) -> bool:
        return self.values() is not None

    def to_raw(self) -> Any:
        """The space-file form of this domain."""
        raise NotImplementedError


@dataclass(frozen=True)
class Constant(Domain):
    """A single fixed value; never asked of a trial."""

    value: Any

    def sample(self, rng: random.Random) -> Any:
        return self.value

    def suggest(self, trial: BaseTrial, name: str) -> Any:
        return self.value

    def values(self) -> list[Any]:
        return [self.value]

    @property
    def is_constant(self) -> bool:
        return True

    def to_raw(self) -> Any:
        return self.value

    def __str__(self) -> str:
        return f"{self.value!r}"


def _label(value: Any) -> Any:
    """An Optuna-compatible categorical value: primitives as they are, lists as JSON text."""
    return value if isinstance(value, _PRIMITIVES) else json.dumps(value)


@dataclass(frozen=True)
class Choice(Domain):
    """One of a list of values (any YAML values; lists such as `[13, 3]` included)."""

    options: tuple[Any, ...]

    def sample(self, rng: random.Random) -> Any:
        return self.options[rng.randrange(len(self.options))]

    def suggest(self, trial: BaseTrial, name: str) -> Any:
        labels = [_label(v) for v in self.options]
        picked = trial.suggest_categorical(name, labels)
        return self.options[labels.index(picked)]

    def values(self) -> list[Any]:
        return list(self.options)

    def labels(self) -> list[Any]:
        """The values as Optuna sees them (e.g. for a GridSampler search space)."""
        return [_label(v) for v in self.options]

    def min(self) -> Any:
        return min(self.options, key=_order_key)

    def max(self) -> Any:
        return max(self.options, key=_order_key)

    def to_raw(self) -> Any:
        return {"choice": [list(v) if isinstance(v, tuple) else v for v in self.options]}

    def __str__(self) -> str:
        return "choice " + ", ".join(str(list(v)) if isinstance(v, tuple) else str(v) for v in self.options)


def _order_key(value: Any) -> Any:
    """Order numbers by value and lists by their largest element (kernel lists)."""
    if isinstance(value, (list, tuple)) and value:
        return max(value)
    return value


@dataclass(frozen=True)
class IntRange(Domain):
    """Integers low, low+step, ..., high (both ends included)."""

    low: int
    high: int
    step: int = 1

    def sample(self, rng: random.Random) -> int:
        return self.low + self.step * rng.randrange((self.high - self.low) // self.step + 1)

    def suggest(self, trial: BaseTrial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step)

    def values(self) -> list[int]:
        return list(range(self.low, self.high + 1, self.step))

    def size(self) -> int:
        return (self.high - self.low) // self.step + 1

    def min(self) -> int:
        return self.low

    def max(self) -> int:
        return self.low + self.step * ((self.high - self.low) // self.step)

    def to_raw(self) -> Any:
        raw: dict[str, Any] = {"int": [self.low, self.high]}
        if self.step != 1:
            raw["step"] = self.step
        return raw

    def __str__(self) -> str:
        return f"int {self.low}..{self.high}" + (f" step {self.step}" if self.step != 1 else "")


@dataclass(frozen=True)
class FloatRange(Domain):
    """Real numbers in [low, high], uniform or log-uniform."""

    low: float
    high: float
    log: bool = False

    def sample(self, rng: random.Random) -> float:
        if self.log:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)

    def suggest(self, trial: BaseTrial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def values(self) -> None:
        return None

    def size(self) -> None:
        return None

    def min(self) -> float:
        return self.low

    def max(self) -> float:
        return self.high

    def to_raw(self) -> Any:
        raw: dict[str, Any] = {"float": [self.low, self.high]}
        if self.log:
            raw["log"] = True
        return raw

    def __str__(self) -> str:
        return f"float {self.low:g}..{self.high:g}" + (" log" if self.log else "")


# ----------------------------------------------------------------------------- parsing
class DomainSyntaxError(Exception):
    """A malformed domain mapping; `problems` holds (relative path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))


def is_domain_like(raw: Any) -> bool:
    """True for a mapping that is (or was clearly meant to be) a domain."""
    if not isinstance(raw, dict) or not raw:
        return False
    keys = [k for k in raw if isinstance(k, str)]
    if any(k in DOMAIN_KEYS for k in keys):
        return True
    return any(difflib.get_close_matches(k, DOMAIN_KEYS, n=1, cutoff=0.75) for k in keys)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def parse_domain(raw: Any) -> Domain:
    """Turn one YAML value into a domain; raise DomainSyntaxError for a malformed domain.

    Only the shape is checked here (bounds ordered, step positive, log bounds positive); whether
    the values suit the key (odd kernels, enum members) is the schema's job.
    """
    if not is_domain_like(raw):
        return Constant(raw)
    problems: list[tuple[str, str]] = []
    kinds = [k for k in raw if k in DOMAIN_KEYS]
    if len(kinds) != 1:
        if not kinds:
            bad = next(k for k in raw if isinstance(k, str))
            near = difflib.get_close_matches(bad, DOMAIN_KEYS, n=1, cutoff=0.75)
            problems.append((str(bad), f"unknown domain key '{bad}'; did you mean '{near[0]}'? "
                             "a domain is {choice: [...]}, {int: [low, high]} or {float: [low, high]}"))
        else:
            problems.append(("", f"a domain has exactly one of the keys choice, int, float; got {', '.join(kinds)}"))
        raise DomainSyntaxError(problems)
    kind = kinds[0]
    for key in raw:
        if key != kind and key not in DOMAIN_EXTRA_KEYS[kind]:
            allowed = ", ".join((kind,) + DOMAIN_EXTRA_KEYS[kind])
            name = key[:SHOWN_CHARS] if isinstance(key, str) else short(key)
            problems.append((name, f"unknown key '{name}' in a {kind} domain; valid keys: {allowed}"))
    body = raw[kind]
    if kind == "choice":
        dom = _parse_choice(body, problems)
    elif kind == "int":
        dom = _parse_int(body, raw.get("step", 1), problems)
    else:
        dom = _parse_float(body, raw.get("log", False), problems)
    if problems or dom is None:
        raise DomainSyntaxError(problems)
    return dom


def _parse_choice(body: Any, problems: list[tuple[str, str]]) -> Choice | None:
    if not isinstance(body, list):
        problems.append(("choice", f"choice takes a list of values, e.g. choice: [3, 5, 7]; got {short(body)}"))
        return None
    if not body:
        problems.append(("choice", "choice is empty; give at least one value, e.g. choice: [3, 5, 7]"))
        return None
    if len(body) > MAX_CHOICES:
        problems.append(("choice", f"choice has {len(body):,} values; at most {MAX_CHOICES:,} are allowed: "
                                   "use an int range ({int: [low, high], step: s}) for many numbers"))
        return None
    first: dict[Any, int] = {}
    for i, v in enumerate(body):  # one hash per value: linear in the list length
        key = _identity(v)
        if key in first:
            problems.append((f"choice[{i}]", f"duplicate value {short(v)} (also choice[{first[key]}]); "
                                             "list each value once"))
        else:
            first[key] = i
    return Choice(tuple(tuple(v) if isinstance(v, list) else v for v in body)) if not problems else None


def _identity(value: Any) -> Any:
    """A hashable key equal for two YAML values exactly when they are the same value of the same
    type (1, 1.0 and true are three values; [13, 3] equals [13, 3])."""
    if isinstance(value, (list, tuple)):
        return ("list", tuple(_identity(v) for v in value))
    if isinstance(value, dict):
        return ("map", tuple(sorted((repr(k), _identity(v)) for k, v in value.items())))
    if isinstance(value, float) and value != value:
        return ("float", "nan")
    try:
        hash(value)
    except TypeError:
        return (type(value).__name__, repr(value))
    return (type(value).__name__, value)


def _bounds(kind: str, body: Any, problems: list[tuple[str, str]], integer: bool) -> tuple[Any, Any] | None:
    what = "integers" if integer else "numbers"
    if not isinstance(body, list) or len(body) != 2:
        problems.append((kind, f"{kind} takes [low, high] ({what}); got {short(body)}"))
        return None
    ok = True
    for i, v in enumerate(body):
        good = isinstance(v, int) and not isinstance(v, bool) if integer else _is_number(v)
        if not good:
            problems.append((f"{kind}[{i}]", f"expected {what[:-1]}, got {short(v)}"))
            ok = False
        elif isinstance(v, float) and not math.isfinite(v):
            problems.append((f"{kind}[{i}]", f"a range bound must be a finite number; got {v}"))
            ok = False
    if ok and body[0] > body[1]:
        problems.append((kind, f"low {short(body[0])} is greater than high {short(body[1])}; "
                               f"write [{short(body[1])}, {short(body[0])}]"))
        ok = False
    return (body[0], body[1]) if ok else None


def _parse_int(body: Any, step: Any, problems: list[tuple[str, str]]) -> IntRange | None:
    bounds = _bounds("int", body, problems, integer=True)
    if not isinstance(step, int) or isinstance(step, bool) or step <= 0:
        problems.append(("step", f"step must be a positive integer; got {short(step)}"))
        return None
    if bounds is None:
        return None
    low, high = bounds
    if (high - low) % step:
        last = low + step * ((high - low) // step)
        problems.append(("int", f"high {short(high)} is not low {short(low)} plus a multiple of step {short(step)}; "
                         f"use {short(last)} or {short(last + step)}"))
        return None
    return IntRange(low, high, step)


def _parse_float(body: Any, log: Any, problems: list[tuple[str, str]]) -> FloatRange | None:
    bounds = _bounds("float", body, problems, integer=False)
    if not isinstance(log, bool):
        problems.append(("log", f"log must be true or false; got {short(log)}"))
        return None
    if bounds is None:
        return None
    low, high = float(bounds[0]), float(bounds[1])
    if log and low <= 0:
        problems.append(("float[0]", f"a log range needs low > 0; got {bounds[0]!r}"))
        return None
    return FloatRange(low, high, log)
