"""Value checkers for the keys of a space file, and the parsing of one key into a domain.

A `Field` knows what values a key accepts; `parse_field` turns a raw YAML value into a domain whose
every value passes the field's check, collecting (path, message) problems instead of stopping.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from lknas.limits import MAX_DEPTH, MAX_KERNEL
from lknas.space.domains import (
    SHOWN_CHARS, Choice, Constant, Domain, DomainSyntaxError, FloatRange, IntRange, parse_domain, short,
)

Issues = list[tuple[str, str]]


class Invalid(Exception):
    """A value a field does not accept; `sub` is a path suffix such as `[1]`."""

    def __init__(self, message: str, sub: str = ""):
        self.message = message
        self.sub = sub
        super().__init__(message)


def describe(value: Any) -> str:
    """A value as the user wrote it, with its YAML type where that explains the error."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        return f"{short(value)} (a string)"
    if isinstance(value, (list, tuple)):
        return f"{short(value)} (a list)"
    return short(value)


def key_text(key: Any) -> str:
    """A mapping key for a key path: itself when it is a short string, else a bounded rendering."""
    if isinstance(key, str):
        return key if len(key) <= SHOWN_CHARS else key[:SHOWN_CHARS] + "..."
    return short(key)


def did_you_mean(key: Any, valid: Iterable[str]) -> str:
    """`unknown key 'kernal'; did you mean 'kernel'? valid keys: ...`."""
    valid = list(valid)
    text = key_text(key)
    near = difflib.get_close_matches(text, valid, n=1, cutoff=0.6)
    hint = f" did you mean '{near[0]}'?" if near else ""
    return f"unknown key '{text}';{hint} valid keys: {', '.join(valid)}"


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True)
class Field:
    """A key's accepted values. `kind` decides which domains make sense for it."""

    name: str
    kind: str  # int | float | enum | bool | kernel | str
    check: Callable[[Any], Any]  # returns the normalized value or raises Invalid
    searchable: bool = True
    odd: bool = False  # integer values must be odd (ranges need an even step)
    valid: str = ""  # the accepted values, compactly ("1..64", "(0, 16]", "dense, stripe, ..."): for the docs
    high: float | None = None  # the upper bound of a numeric key


def num(x: float) -> str:
    """A bound as the docs and messages write it: 16, 0.5, 10000000 (no exponent, no separators)."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


# ----------------------------------------------------------------------------- checkers
def int_field(name: str, lo: int, hi: int, *, odd: bool = False, nullable: bool = False,
              searchable: bool = True) -> Field:
    """An integer key in [lo, hi] (odd ones only with `odd`; null allowed with `nullable`)."""
    expect = ("an odd integer" if odd else "an integer") + f" >= {lo} and <= {hi}"
    valid = ("odd, " if odd else "") + f"{lo}..{hi}"
    if nullable:
        expect += " or null"
        valid += " or null"

    def check(v: Any) -> Any:
        if v is None and nullable:
            return None
        if not is_int(v):
            raise Invalid(f"{name} must be {expect}; got {describe(v)}")
        if v < lo or v > hi:
            raise Invalid(f"{name} must be {expect}; got {short(v)}")
        if odd and v % 2 == 0:
            raise Invalid(f"{name} {v} is even; {name} must be {expect}")
        return v

    return Field(name, "int", check, searchable, odd, valid, hi)


def float_field(name: str, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False,
                nullable: bool = False, searchable: bool = True) -> Field:
    """A finite number in the interval from lo to hi (each end open or closed)."""
    valid = f"{'(' if lo_open else '['}{num(lo)}, {num(hi)}{')' if hi_open else ']'}"
    expect = f"a number in {valid}"
    if nullable:
        expect += " or null"
        valid += " or null"

    def check(v: Any) -> Any:
        if v is None and nullable:
            return None
        if not is_number(v):
            raise Invalid(f"{name} must be {expect}; got {describe(v)}")
        if isinstance(v, float) and not math.isfinite(v):
            raise Invalid(f"{name} must be {expect} (finite); got {v}")
        too_low = v <= lo if lo_open else v < lo
        too_high = v >= hi if hi_open else v > hi
        if too_low or too_high:
            raise Invalid(f"{name} must be {expect}; got {short(v) if isinstance(v, int) else f'{v:g}'}")
        return float(v)

    return Field(name, "float", check, searchable, valid=valid, high=hi)


def enum_field(name: str, options: Iterable[str], *, searchable: bool = True) -> Field:
    options = tuple(options)

    def check(v: Any) -> Any:
        if not isinstance(v, str) or v not in options:
            near = difflib.get_close_matches(str(v), options, n=1, cutoff=0.6) if isinstance(v, str) else []
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise Invalid(f"{name} must be one of {', '.join(options)}; got {describe(v)}{hint}")
        return v

    return Field(name, "enum", check, searchable, valid=", ".join(options))


def bool_field(name: str, *, searchable: bool = True) -> Field:
    def check(v: Any) -> Any:
        if not isinstance(v, bool):
            raise Invalid(f"{name} must be true or false; got {describe(v)}")
        return v

    return Field(name, "bool", check, searchable, valid="true, false")


MAX_TEXT = 4096  # characters of a free-text value (a data-set name with its path)


def str_field(name: str, *, nullable: bool = False) -> Field:
    def check(v: Any) -> Any:
        if v is None and nullable:
            return v
        if not isinstance(v, str) or not v or len(v) > MAX_TEXT:
            raise Invalid(f"{name} must be a non-empty string of at most {MAX_TEXT} characters; got {describe(v)}")
        return v

    return Field(name, "str", check, searchable=False, valid="text")


def check_kernel_size(v: Any, sub: str = "") -> int:
    if not is_int(v):
        raise Invalid(f"kernel size must be an odd integer from 1 to {MAX_KERNEL}; got {describe(v)}", sub)
    if v % 2 == 0:
        raise Invalid(f"kernel size {short(v)} is even; kernel sizes must be odd (3, 5, 7, ..., up to {MAX_KERNEL})",
                      sub)
    if not 1 <= v <= MAX_KERNEL:
        raise Invalid(f"kernel size {short(v)} is out of range; kernel sizes are odd integers from 1 to {MAX_KERNEL}",
                      sub)
    return v


def _check_kernel(v: Any) -> Any:
    """An odd size, or a non-empty list of odd sizes cycled over the blocks (a tuple)."""
    if isinstance(v, (list, tuple)):
        if not v:
            raise Invalid("a kernel list needs at least one size, e.g. [13, 3]")
        if len(v) > MAX_DEPTH:
            raise Invalid(f"a kernel list has at most {MAX_DEPTH} sizes (one per block of the deepest stage); "
                          f"got {len(v)}")
        return tuple(check_kernel_size(k, f"[{i}]") for i, k in enumerate(v))
    return check_kernel_size(v)


KERNEL_FIELD = Field("kernel", "kernel", _check_kernel, odd=True,
                     valid=f"odd, 1..{MAX_KERNEL}, or a list of at most {MAX_DEPTH} such sizes", high=MAX_KERNEL)
REPARAM_SIZES = (0, 3, 5, 7)


def _check_reparam(v: Any) -> Any:
    if v is None or v == "none":
        return 0
    if not is_int(v) or v not in REPARAM_SIZES:
        raise Invalid(f"reparam must be 0 (none), 3, 5 or 7 (the small parallel kernel); got {describe(v)}")
    return v


REPARAM_FIELD = Field("reparam", "int", _check_reparam, valid=", ".join(map(str, REPARAM_SIZES)) + " (0: none)",
                      high=max(REPARAM_SIZES))


# ----------------------------------------------------------------------------- parsing
def parse_field(field: Field, raw: Any, path: str, issues: Issues) -> Domain | None:
    """Parse `raw` into a domain of valid, normalized values; add problems to `issues`."""
    try:
        dom = parse_domain(raw)
    except DomainSyntaxError as err:
        issues.extend((_join(path, sub), msg) for sub, msg in err.problems)
        return None
    if isinstance(dom, Constant):
        try:
            return Constant(field.check(dom.value))
        except Invalid as err:
            issues.append((path + err.sub, err.message))
            return None
    if not field.searchable:
        issues.append((path, f"{field.name} cannot be searched; give a single value "
                             "(only architecture keys, train.lr and train.weight_decay take domains)"))
        return None
    n = len(issues)
    if isinstance(dom, Choice):
        values = []
        for i, v in enumerate(dom.options):
            try:
                values.append(field.check(list(v) if isinstance(v, tuple) else v))
            except Invalid as err:
                issues.append((f"{path}.choice[{i}]{err.sub}", err.message))
        return Choice(tuple(values)) if len(issues) == n else None
    if isinstance(dom, IntRange):
        if field.kind not in ("int", "float", "kernel"):
            issues.append((path, f"{field.name} does not take an int range; use choice: [...]"))
            return None
        for i, v in enumerate((dom.low, dom.high)):
            try:
                field.check(v)
            except Invalid as err:
                issues.append((f"{path}.int[{i}]", err.message))
        if len(issues) == n and field.odd and dom.step % 2 and dom.low != dom.high:
            issues.append((f"{path}.step", f"{field.name} values must be odd; with an odd low use an even step "
                                           f"(step: {dom.step * 2 if dom.step > 1 else 2})"))
        if len(issues) == n and dom.size() <= 1024:
            for v in dom.values():
                try:
                    field.check(v)
                except Invalid as err:
                    issues.append((f"{path}.int", f"the range includes {v}: {err.message}"))
                    break
        return dom if len(issues) == n else None
    assert isinstance(dom, FloatRange)
    if field.kind != "float":
        hint = "int: [low, high]" if field.kind in ("int", "kernel") else "choice: [...]"
        issues.append((path, f"{field.name} does not take a float range; use {hint}"))
        return None
    for i, v in enumerate((dom.low, dom.high)):
        try:
            field.check(v)
        except Invalid as err:
            issues.append((f"{path}.float[{i}]", err.message))
    return dom if len(issues) == n else None


def _join(path: str, sub: str) -> str:
    if not sub:
        return path
    return f"{path}.{sub}" if not sub.startswith("[") else path + sub


def normalize(field: Field, value: Any) -> Any:
    """Normalize a value drawn from a validated domain (ints of a float key become floats)."""
    return field.check(list(value) if isinstance(value, tuple) else value)
