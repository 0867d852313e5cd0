"""`--from FILE_OR_RUN`: start a search from known architectures.

A source is an architecture YAML, a directory of them, or a previous run (its Pareto set in
`archs/`). Each architecture is turned back into the space's parameters; it is used only if the
space rebuilds exactly the same architecture from them (same hash), so a seed never silently
becomes a different network. The others are reported with the first key that differs.
"""
from __future__ import annotations

import itertools
import math
import warnings
from pathlib import Path
from typing import Any

import optuna

from lknas.arch import ArchConfig
from lknas.errors import LknasError
from lknas.space import SearchSpace, load_arch
from lknas.space.domains import Choice, Constant, Domain, FloatRange, IntRange
from lknas.space.resolve import scaled_width

__all__ = ["seed_points", "arch_sources", "arch_to_params"]


def arch_sources(source: str | Path) -> list[tuple[str, ArchConfig]]:
    """(file name, ArchConfig) for each architecture a `--from` source names."""
    path = Path(source)
    if path.is_dir():
        folder = path / "archs" if (path / "run.json").is_file() else path
        files = sorted(folder.glob("*.y*ml"))
        if not files:
            raise LknasError(f"--from {source}: no architecture YAML files in {folder}")
    elif path.is_file():
        files = [path]
    else:
        raise LknasError(f"--from {source}: no such file or directory; give an architecture YAML, a directory "
                         f"of them, or a previous run (results/RUN)")
    return [(str(f), load_arch(f)) for f in files]


def _candidates(data: dict[str, Any], name: str) -> list[Any]:
    """The values an architecture dict (ArchConfig.to_dict form) may hold for a dimension name:
    one, except for a global stage key whose stages differ after normalization (a reparam kernel
    not smaller than a stage's k is dropped there), where each stage's value is a candidate."""
    if name.startswith("stages["):
        index, key = name[len("stages["):].split("].", 1)
        stages = data["stages"]
        return [stages[int(index)].get(key)] if int(index) < len(stages) else []
    head, _, key = name.partition(".")
    if key and head in ("sparsity", "stem", "head"):
        return [(data.get(head) or {}).get(key)]
    if name in data:
        return [data[name]]
    values: list[Any] = []
    for stage in data["stages"]:
        if name in stage and stage[name] not in values:
            values.append(stage[name])
    return values


def _multipliers(space: SearchSpace) -> list[float]:
    for dim in space.dimensions:
        if dim.name == "width_multiplier":
            return [float(v) for v in dim.domain.values()]
    const = space.template.globals.get("width_multiplier")
    return [float(const.value)] if isinstance(const, Constant) else [1.0]


def _in_domain(domain: Domain, value: Any) -> bool:
    if isinstance(domain, Choice):
        return value in domain.labels()
    if isinstance(domain, IntRange):
        return value in domain.values()
    if isinstance(domain, FloatRange):
        return domain.low <= value <= domain.high
    return True


def _as_param(domain: Domain, value: Any) -> Any:
    if isinstance(domain, Choice):
        wanted = list(value) if isinstance(value, tuple) else value
        for option, label in zip(domain.options, domain.labels()):
            opt = list(option) if isinstance(option, tuple) else option
            if opt == wanted or (isinstance(opt, (int, float)) and isinstance(wanted, (int, float))
                                 and not isinstance(opt, bool) and float(opt) == float(wanted)):
                return label
        return value
    if isinstance(domain, IntRange):
        return int(value)
    return float(value)


def _midpoint(domain: Domain) -> Any:
    if isinstance(domain, FloatRange):
        return math.sqrt(domain.low * domain.high) if domain.log else (domain.low + domain.high) / 2
    if isinstance(domain, IntRange):
        return domain.values()[len(domain.values()) // 2]
    return domain.labels()[0] if isinstance(domain, Choice) else None


def arch_to_params(space: SearchSpace, arch: ArchConfig) -> tuple[dict[str, Any] | None, str]:
    """The space's parameters that rebuild `arch` exactly, or (None, why not). Searched training
    values (train.lr, ...) take the middle of their range."""
    data = arch.to_dict()
    multipliers = _multipliers(space)
    options: dict[str, list[Any]] = {}
    for dim in space.dimensions:
        if dim.name.startswith("train."):
            options[dim.name] = [_midpoint(dim.domain)]
            continue
        if dim.name == "width_multiplier":
            options[dim.name] = dim.domain.labels() if isinstance(dim.domain, Choice) else dim.domain.values()
            continue
        found = [v for v in _candidates(data, dim.name) if v is not None]
        if dim.name.split(".")[-1] == "width" and dim.domain.is_finite:  # widths are stored scaled
            found = [w for w in dim.domain.values() if any(scaled_width(w, m) in found for m in multipliers)] or found
        values = [_as_param(dim.domain, v) for v in found]
        outside = [v for v in values if not _in_domain(dim.domain, v)]
        values = [v for v in values if _in_domain(dim.domain, v)]
        if outside and not values:
            return None, f"not in this space: {dim.name} is {outside[0]!r} there, outside {dim.domain}"
        if values:
            options[dim.name] = values
    why = "no parameters of this space rebuild it"
    for combo in itertools.islice(itertools.product(*options.values()), 64):
        params = dict(zip(options, combo))
        trial = optuna.trial.FixedTrial(params)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rebuilt = space.suggest(trial)
        except ValueError as err:
            why = f"not in this space ({err})"
            continue
        if rebuilt.hash() == arch.hash():
            return dict(trial.params), ""
        why = f"not in this space: {_first_difference(arch.to_dict(), rebuilt.to_dict())}"
    return None, why


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path} is {a!r} there, the space gives {b!r}"


def seed_points(space: SearchSpace, source: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """(parameter dicts to evaluate first, one message per architecture that could not be used)."""
    points, skipped = [], []
    for name, arch in arch_sources(source):
        params, why = arch_to_params(space, arch)
        if params is None:
            skipped.append(f"{name}: {why}")
        elif params not in points:
            points.append(params)
    return points, skipped
