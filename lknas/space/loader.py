"""Reading space files: YAML with clear errors, bundled-name resolution, `load_space`, `load_arch`.

A file is read only if it is at most MAX_FILE_BYTES of UTF-8; its YAML is parsed by a SafeLoader
(no tags that build Python objects) that refuses oversized integers; what PyYAML cannot build (deep
nesting, impossible dates) is reported like any other problem, never as a traceback.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from lknas.arch import ArchConfig
from lknas.errors import Problem, SpaceError
from lknas.limits import MAX_FILE_BYTES, MAX_INT_DIGITS, MAX_NESTING
from lknas.space.schema import parse_space
from lknas.space.space import SearchSpace


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads 2e-3 as a float (YAML 1.2), rejects duplicate keys and integers of
    more than MAX_INT_DIGITS digits (Python refuses to convert 4300 or more)."""

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = sum(c.isdigit() for c in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer of {digits} digits is out of range (at most {MAX_INT_DIGITS} digits)",
                node.start_mark)
        return super().construct_yaml_int(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key '{key}' (first given on line {seen[key] + 1}); "
                        "give each key once", key_node.start_mark)
                seen[key] = key_node.start_mark.line
            except TypeError:  # unhashable key: let PyYAML report it
                pass
        return super().construct_mapping(node, deep=deep)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def read_yaml(text: str, file: str = "<string>") -> Any:
    """Parse YAML text; a syntax error, an unreadable value (a 5000-digit integer, a date such as
    2024-13-01) or nesting too deep for the parser becomes a SpaceError, with line and column
    where PyYAML knows them."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        what = " ".join(str(p) for p in (err.context, err.problem) if p)
        raise SpaceError([Problem(file, "", f"YAML syntax error at {where}: {what}")]) from None
    except yaml.YAMLError as err:
        raise SpaceError([Problem(file, "", f"YAML error: {err}")]) from None
    except RecursionError:
        raise SpaceError([Problem(file, "", f"mappings and lists nest too deep for the YAML parser; a space "
                                            f"file nests at most {MAX_NESTING} levels")]) from None
    except (ValueError, TypeError, OverflowError) as err:  # a value PyYAML matched but cannot build
        raise SpaceError([Problem(file, "", f"YAML value error: {str(err)[:200]}")]) from None


def read_text(path: Path, file: str) -> str:
    """The text of a space file: at most MAX_FILE_BYTES, UTF-8; SpaceError otherwise."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise SpaceError([Problem(file, "", f"cannot read the file: {err.strerror or err}")]) from None
    if len(data) > MAX_FILE_BYTES:
        raise SpaceError([Problem(file, "", f"the file is larger than {MAX_FILE_BYTES // 1024} kB; a space file "
                                            "describes one space (the bundled ones are 2-4 kB)")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise SpaceError([Problem(file, "", f"the file is not UTF-8 text: byte 0x{data[err.start]:02x} at line "
                                            f"{line} (offset {err.start}); save it as UTF-8")]) from None


def bundled_dir() -> Path:
    """The repository's `search_spaces/` directory."""
    import lknas

    base = Path(lknas.__file__).parent if getattr(lknas, "__file__", None) else Path(__file__).parents[1]
    return base.parent / "search_spaces"


def bundled_spaces(directory: Path | None = None) -> list[str]:
    """Names of the bundled space files (`x.yaml`, `reference/y.yaml`)."""
    d = directory or bundled_dir()
    if not d.is_dir():
        return []
    return sorted(str(p.relative_to(d)) for p in d.rglob("*.y*ml") if p.is_file())


def resolve_space_path(name: str | Path, directory: Path | None = None) -> Path:
    """An existing path as is; otherwise a relative name looked up in `directory` (default: the
    bundled `search_spaces/`), with or without `.yaml`. SpaceError listing the bundled spaces if
    nothing matches."""
    path = Path(name)
    if path.is_file():
        return path
    d = directory or bundled_dir()
    if not path.is_absolute():
        for cand in (d / path, d / f"{path}.yaml", d / f"{path}.yml"):
            if cand.is_file():
                return cand
        lowered = {n.lower(): n for n in bundled_spaces(d)}
        for cand in (str(path).lower(), f"{str(path).lower()}.yaml"):
            if cand in lowered:
                return d / lowered[cand]
    known = bundled_spaces(d)
    listing = ", ".join(known) if known else "(none)"
    raise SpaceError([Problem(str(name), "", f"file not found; give a path to a space file or the name of a "
                                             f"bundled space in {d}: {listing}")])


def load_space(path_or_name: str | Path, directory: Path | None = None) -> SearchSpace:
    """Read, parse and validate a space file (a path, or the name of a bundled space)."""
    path = resolve_space_path(path_or_name, directory)
    file = str(path)
    data = read_yaml(read_text(path, file), file)
    if data is None:
        raise SpaceError([Problem(file, "", "the file is empty; a space needs at least a 'stages' list")])
    return parse_space(data, file)


def load_arch(source: ArchConfig | dict[str, Any] | str | Path) -> ArchConfig:
    """An ArchConfig from an ArchConfig, a dict in space-file form, or a domain-free space file.

    Hand-written input is validated; any remaining domain is a SpaceError naming it."""
    if isinstance(source, ArchConfig):
        return source
    if isinstance(source, dict):
        return parse_space(source, "<dict>").fixed()
    if isinstance(source, (str, Path)):
        return load_space(source).fixed()
    raise TypeError(f"load_arch takes an ArchConfig, a dict or a path; got {type(source).__name__}")
