"""Value checkers for the keys of a space file, and the parsing of one key into a domain.

A `Field` knows what values a key accepts; `parse_field` turns a raw YAML value into a domain whose
every value passes the field's check, collecting (path, message) problems instead of stopping.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from lknas.space.domains import Choice, Constant, Domain, DomainSyntaxError, FloatRange, IntRange, parse_domain

MAX_KERNEL = 201
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
        return f"'{value}' (a string)"
    if isinstance(value, (list, tuple)):
        return f"{list(value)} (a list)"
    if isinstance(value, dict):
        return "a mapping"
    return repr(value)


def did_you_mean(key: str, valid: Iterable[str]) -> str:
    """`unknown key 'kernal'; did you mean 'kernel'? valid keys: ...`."""
    valid = list(valid)
    near = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
    hint = f" did you mean '{near[0]}'?" if near else ""
    return f"unknown key '{key}';{hint} valid keys: {', '.join(valid)}"


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


# ----------------------------------------------------------------------------- checkers
def int_field(name: str, lo: int | None = None, hi: int | None = None, *, odd: bool = False,
              nullable: bool = False, searchable: bool = True) -> Field:
    parts = [f">= {lo}" if lo is not None else "", f"<= {hi}" if hi is not None else ""]
    bound = " and ".join(p for p in parts if p)
    expect = ("an odd integer" if odd else "an integer") + (f" {bound}" if bound else "")
    if nullable:
        expect += " or null"

    def check(v: Any) -> Any:
        if v is None and nullable:
            return None
        if not is_int(v):
            raise Invalid(f"{name} must be {expect}; got {describe(v)}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise Invalid(f"{name} must be {expect}; got {v}")
        if odd and v % 2 == 0:
            raise Invalid(f"{name} {v} is even; {name} must be {expect}")
        return v

    return Field(name, "int", check, searchable, odd)


def float_field(name: str, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
                hi_open: bool = False, nullable: bool = False, searchable: bool = True) -> Field:
    if lo is not None and hi is not None:
        expect = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    elif lo is not None:
        expect = f"a number {'>' if lo_open else '>='} {lo:g}"
    else:
        expect = "a number"
    if nullable:
        expect += " or null"

    def check(v: Any) -> Any:
        if v is None and nullable:
            return None
        if not is_number(v):
            raise Invalid(f"{name} must be {expect}; got {describe(v)}")
        too_low = lo is not None and (v <= lo if lo_open else v < lo)
        too_high = hi is not None and (v >= hi if hi_open else v > hi)
        if too_low or too_high:
            raise Invalid(f"{name} must be {expect}; got {v:g}")
        return float(v)

    return Field(name, "float", check, searchable)


def enum_field(name: str, options: Iterable[str], *, searchable: bool = True) -> Field:
    options = tuple(options)

    def check(v: Any) -> Any:
        if not isinstance(v, str) or v not in options:
            near = difflib.get_close_matches(str(v), options, n=1, cutoff=0.6) if isinstance(v, str) else []
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise Invalid(f"{name} must be one of {', '.join(options)}; got {describe(v)}{hint}")
        return v

    return Field(name, "enum", check, searchable)


def bool_field(name: str, *, searchable: bool = True) -> Field:
    def check(v: Any) -> Any:
        if not isinstance(v, bool):
            raise Invalid(f"{name} must be true or false; got {describe(v)}")
        return v

    return Field(name, "bool", check, searchable)


def str_field(name: str) -> Field:
    def check(v: Any) -> Any:
        if not isinstance(v, str) or not v:
            raise Invalid(f"{name} must be a non-empty string; got {describe(v)}")
        return v

    return Field(name, "str", check, searchable=False)


def check_kernel_size(v: Any, sub: str = "") -> int:
    if not is_int(v):
        raise Invalid(f"kernel size must be an odd integer from 1 to {MAX_KERNEL}; got {describe(v)}", sub)
    if v % 2 == 0:
        raise Invalid(f"kernel size {v} is even; kernel sizes must be odd (3, 5, 7, ..., up to {MAX_KERNEL})", sub)
    if not 1 <= v <= MAX_KERNEL:
        raise Invalid(f"kernel size {v} is out of range; kernel sizes are odd integers from 1 to {MAX_KERNEL}", sub)
    return v


def _check_kernel(v: Any) -> Any:
    """An odd size, or a non-empty list of odd sizes cycled over the blocks (a tuple)."""
    if isinstance(v, (list, tuple)):
        if not v:
            raise Invalid("a kernel list needs at least one size, e.g. [13, 3]")
        return tuple(check_kernel_size(k, f"[{i}]") for i, k in enumerate(v))
    return check_kernel_size(v)


KERNEL_FIELD = Field("kernel", "kernel", _check_kernel, odd=True)
REPARAM_SIZES = (0, 3, 5, 7)


def _check_reparam(v: Any) -> Any:
    if v is None or v == "none":
        return 0
    if not is_int(v) or v not in REPARAM_SIZES:
        raise Invalid(f"reparam must be 0 (none), 3, 5 or 7 (the small parallel kernel); got {describe(v)}")
    return v


REPARAM_FIELD = Field("reparam", "int", _check_reparam)


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
