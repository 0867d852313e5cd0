"""Scaling-study experiment files: parse, validate, expand into points.

    exp = load_experiment("experiments/kernel_vs_depth_width.yaml")
    points = expand(exp)            # lknas.study.points: an ArchConfig + resolution per point

A file names a base architecture (`base:` a path to an architecture YAML or an inline mapping),
a `train` section (as in a space file), `seeds`, optional `datasets` and `variants` (named
overrides of the base's kernel settings, e.g. `{kernel_type: stripe}`), and the dimensions to
scale one at a time under `scale`:

    scale:
      kernel: [[3, 3, 3, 3], [7, 7, 7, 7], 13]     # per-stage sizes (odd), or one size for all stages
      kernel: {multipliers: [1, 2, 4]}              # or multipliers (rounded to an odd size)
      depth: {multipliers: [1, 2]}  | [[1, 1, 2, 1], ...] | {match: kernel}
      width: {multipliers: [1, 1.5]} | [[16, 32, 64, 128], ...] | {match: kernel}
      resolution: [48, 64, 96]
      compound: {phi: [1, 2], depth: 1.2, width: 1.1, resolution: 1.15, kernel: 1.0}

`{match: kernel}` picks, for each kernel point, the depth (or width) multiplier whose FLOPs come
closest to that kernel point's: RepLKNet's question asked at matched FLOPs. Every problem in a file
is reported at once with the file, the key path and what would be valid (`ExperimentError`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lknas.arch import ArchConfig
from lknas.errors import Problem, SpaceError
from lknas.space.configs import DEFAULT_OBJECTIVES, Objective, TrainConfig, parse_objectives, parse_train
from lknas.space.fields import describe, did_you_mean

__all__ = ["Experiment", "ExperimentError", "load_experiment", "parse_experiment", "DIMENSIONS"]

DIMENSIONS = ("kernel", "depth", "width", "resolution", "compound")
TOP_KEYS = ("name", "description", "base", "train", "datasets", "seeds", "variants", "scale", "run", "objectives")
RUN_KEYS = ("cpus_per_trial", "gpus_per_trial", "max_concurrent")
VARIANT_KEYS = ("kernel_type", "reparam", "partial", "stripe_n", "r_c", "m", "k_prime", "pos_embed", "grid",
                "share_scale", "kernel", "block", "mlp_ratio", "shortcut", "sparsity")
COMPOUND_KEYS = ("phi", "depth", "width", "resolution", "kernel")
# kernel options that only one kernel type has: dropped when a variant switches the type
TYPE_ONLY = {"stripe_n": "stripe", "r_c": "peripheral", "m": "peripheral", "k_prime": "peripheral",
             "pos_embed": "peripheral", "grid": "peripheral", "share_scale": "peripheral"}
NOT_FOR = {"reparam": ("dilated",)}  # options every kernel type but these has


class ExperimentError(SpaceError):
    """An experiment file is invalid; carries every problem found."""

    def _format(self) -> str:
        n = len(self.problems)
        return f"{n} problem{'s' if n != 1 else ''} in experiment:\n" + "\n".join(f"  - {p}" for p in self.problems)


@dataclass(frozen=True)
class Experiment:
    file: str
    name: str
    description: str
    base: ArchConfig
    train: TrainConfig
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    variants: dict[str, dict[str, Any]]
    scale: dict[str, Any]
    run: dict[str, Any] = field(default_factory=dict)
    objectives: tuple[Objective, ...] = DEFAULT_OBJECTIVES


# ----------------------------------------------------------------------------- loading
def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file (a path, or a name in `experiments/`)."""
    from lknas.space.loader import read_text, read_yaml
    from lknas.space.structure import check_structure

    p = Path(path)
    if not p.is_file():
        bundled = Path(__file__).resolve().parents[2] / "experiments"
        for cand in (bundled / p, bundled / f"{p}.yaml"):
            if cand.is_file():
                p = cand
                break
        else:
            known = ", ".join(sorted(x.name for x in bundled.glob("*.yaml"))) if bundled.is_dir() else "(none)"
            raise ExperimentError([Problem(str(path), "", f"file not found; give a path or a bundled experiment: {known}")])
    data = read_yaml(read_text(p, str(p)), str(p))  # the space files' limits: size, UTF-8, numbers, nesting
    check_structure(data, str(p))
    return parse_experiment(data, str(p))


def parse_experiment(data: Any, file: str = "<dict>") -> Experiment:
    issues: list[tuple[str, str]] = []
    if not isinstance(data, dict):
        raise ExperimentError([Problem(file, "", f"an experiment file is a mapping with base, train, seeds and scale; "
                                                 f"got {describe(data)}")])
    for key in data:
        if key not in TOP_KEYS:
            issues.append((str(key), did_you_mean(key, TOP_KEYS)))
    name = data.get("name") or (Path(file).stem if not file.startswith("<") else "experiment")
    base = _base(data.get("base"), file, issues)
    train = parse_train(data.get("train"), issues)
    if not train.is_fixed:
        issues.append(("train", "lr and weight_decay must be single numbers in a scaling study (no domains)"))
    datasets = _datasets(data.get("datasets"), train, issues)
    seeds = _seeds(data.get("seeds", 1), issues)
    variants = _variants(data.get("variants"), issues)
    scale = _scale(data.get("scale"), base, issues)
    run = _run(data.get("run"), issues)
    objectives = parse_objectives(data["objectives"], issues) if "objectives" in data else DEFAULT_OBJECTIVES
    if issues:
        raise ExperimentError([Problem(file, p, m) for p, m in issues])
    exp = Experiment(file=file, name=str(name), description=str(data.get("description") or ""), base=base,
                     train=train, datasets=datasets, seeds=seeds, variants=variants, scale=scale, run=run,
                     objectives=objectives)
    # variants and explicit points must build: check them now, before any counting or training
    for vname, over in variants.items():
        _arch(_variant_dict(base, over), f"variants.{vname}", file, issues)
    if issues:
        raise ExperimentError([Problem(file, p, m) for p, m in issues])
    return exp


def _base(raw: Any, file: str, issues) -> ArchConfig | None:
    from lknas.space import load_arch
    from lknas.space.loader import resolve_space_path

    if raw is None:
        issues.append(("base", "missing: a path to an architecture YAML (e.g. search_spaces/reference/pelk_t.yaml) "
                               "or an inline architecture mapping with stages"))
        return None
    if isinstance(raw, str):
        here = Path(file).parent / raw
        try:
            return load_arch(here if here.is_file() else resolve_space_path(raw))
        except SpaceError as err:
            issues.extend((f"base ({p.file}: {p.path})" if p.path else f"base ({p.file})", p.message)
                          for p in err.problems)
            return None
    if isinstance(raw, dict):
        try:
            return load_arch(raw)
        except SpaceError as err:
            issues.extend((f"base.{p.path}" if p.path else "base", p.message) for p in err.problems)
            return None
    issues.append(("base", f"expected a path or a mapping; got {describe(raw)}"))
    return None


def _datasets(raw: Any, train: TrainConfig, issues) -> tuple[str, ...]:
    if raw is None:
        return (train.dataset,)
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw or not all(isinstance(d, str) and d for d in raw):
        issues.append(("datasets", f"a list of data set names, e.g. [pathfinder, shapes]; got {describe(raw)}"))
        return (train.dataset,)
    return tuple(raw)


def _seeds(raw: Any, issues) -> tuple[int, ...]:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 1:
        return tuple(range(raw))
    if isinstance(raw, list) and raw and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in raw):
        if len(set(raw)) == len(raw):
            return tuple(raw)
    issues.append(("seeds", f"a count >= 1 (seeds 0..N-1) or a list of distinct seeds >= 0; got {describe(raw)}"))
    return (0,)


def _variants(raw: Any, issues) -> dict[str, dict[str, Any]]:
    if raw is None:
        return {"base": {}}
    if not isinstance(raw, dict) or not raw:
        issues.append(("variants", "a mapping of names to overrides, e.g. {stripe: {kernel_type: stripe}}; got "
                                   + describe(raw)))
        return {"base": {}}
    out = {}
    for name, over in raw.items():
        over = {} if over is None else over
        if not isinstance(over, dict):
            issues.append((f"variants.{name}", f"a mapping of overrides; got {describe(over)}"))
            continue
        for key in over:
            if key not in VARIANT_KEYS:
                issues.append((f"variants.{name}.{key}", did_you_mean(key, VARIANT_KEYS)))
        out[str(name)] = dict(over)
    return out


def _number_list(raw: Any, path: str, issues, lo: float = 0.0, integer: bool = False) -> list:
    if not isinstance(raw, list) or not raw:
        issues.append((path, f"a non-empty list of numbers; got {describe(raw)}"))
        return []
    out = []
    for i, v in enumerate(raw):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v > lo and (not integer or isinstance(v, int))
        if not ok:
            issues.append((f"{path}[{i}]", f"expected {'an integer' if integer else 'a number'} > {lo:g}; "
                                            f"got {describe(v)}"))
        else:
            out.append(v)
    return out


def _per_stage(raw: Any, path: str, n: int | None, what: str, issues, odd: bool = False) -> list:
    """Explicit points: each a list of `n` per-stage values (or one value for every stage)."""
    if not isinstance(raw, list) or not raw:
        issues.append((path, f"a non-empty list of points (each {n} per-stage {what}s, or one for all stages) "
                             f"or {{multipliers: [...]}}; got {describe(raw)}"))
        return []
    out = []
    for i, entry in enumerate(raw):
        p = f"{path}[{i}]"
        values = [entry] * (n or 1) if not isinstance(entry, list) else entry
        if n is not None and len(values) != n:
            issues.append((p, f"{len(values)} values for {n} stages; give one {what} per stage"))
            continue
        good = True
        for j, v in enumerate(values):
            items = v if (odd and isinstance(v, list)) else [v]  # a kernel may cycle (UniRepLKNet: [13, 3])
            for x in items:
                if isinstance(x, bool) or not isinstance(x, int) or x < 1:
                    issues.append((f"{p}[{j}]" if isinstance(entry, list) else p,
                                   f"a {what} must be an integer >= 1; got {describe(x)}"))
                    good = False
                elif odd and x % 2 == 0:
                    issues.append((f"{p}[{j}]" if isinstance(entry, list) else p,
                                   f"kernel size {x} is even; kernel sizes must be odd (3, 5, 7, ...)"))
                    good = False
        if good:
            out.append([tuple(v) if isinstance(v, list) else v for v in values])
    return out


def _scale(raw: Any, base: ArchConfig | None, issues) -> dict[str, Any]:
    if raw is None:
        return {}  # the variants' base points only (an ablation)
    if not isinstance(raw, dict) or not raw:
        issues.append(("scale", f"a mapping of dimensions to points ({', '.join(DIMENSIONS)}); got {describe(raw)}"))
        return {}
    n = len(base.stages) if base is not None else None  # unknown: entries are still checked
    out: dict[str, Any] = {}
    for dim, spec in raw.items():
        path = f"scale.{dim}"
        if dim not in DIMENSIONS:
            issues.append((path, did_you_mean(dim, DIMENSIONS)))
            continue
        if dim == "resolution":
            values = _number_list(spec, path, issues, lo=15, integer=True)
            out[dim] = {"values": values}
        elif dim == "compound":
            out[dim] = _compound(spec, path, issues)
        elif isinstance(spec, dict):
            keys = ("multipliers",) if dim == "kernel" else ("multipliers", "match")
            for key in spec:
                if key not in keys:
                    issues.append((f"{path}.{key}", did_you_mean(key, keys)))
            if "match" in spec and dim != "kernel":
                if spec["match"] != "kernel":
                    issues.append((f"{path}.match", f"only 'kernel' can be matched (FLOPs of the kernel points); "
                                                    f"got {describe(spec['match'])}"))
                elif "kernel" not in raw:
                    issues.append((f"{path}.match", "match: kernel needs a scale.kernel dimension to match"))
                out[dim] = {"match": "kernel"}
            elif "multipliers" in spec:
                out[dim] = {"multipliers": _number_list(spec["multipliers"], f"{path}.multipliers", issues)}
            else:
                issues.append((path, f"give {{multipliers: [...]}}{'' if dim == 'kernel' else ' or {match: kernel}'}"))
        else:
            out[dim] = {"explicit": _per_stage(spec, path, n, "kernel size" if dim == "kernel" else dim, issues,
                                               odd=dim == "kernel")}
    return out


def _compound(spec: Any, path: str, issues) -> dict[str, Any]:
    if not isinstance(spec, dict):
        issues.append((path, f"{{phi: [1, 2], depth: 1.2, width: 1.1, resolution: 1.15, kernel: 1.0}}; got {describe(spec)}"))
        return {}
    out: dict[str, Any] = {"depth": 1.2, "width": 1.1, "resolution": 1.15, "kernel": 1.0}
    for key, value in spec.items():
        if key not in COMPOUND_KEYS:
            issues.append((f"{path}.{key}", did_you_mean(key, COMPOUND_KEYS)))
        elif key == "phi":
            out["phi"] = _number_list(value, f"{path}.phi", issues, lo=-10)
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
            issues.append((f"{path}.{key}", f"a coefficient >= 1 (EfficientNet: depth 1.2, width 1.1, "
                                            f"resolution 1.15); got {describe(value)}"))
        else:
            out[key] = float(value)
    if "phi" not in out:
        issues.append((f"{path}.phi", "missing: the compound exponents to run, e.g. [1, 2]"))
    return out


def _run(raw: Any, issues) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        issues.append(("run", f"a mapping ({', '.join(RUN_KEYS)}); got {describe(raw)}"))
        return {}
    out = {}
    for key, value in raw.items():
        if key not in RUN_KEYS:
            issues.append((f"run.{key}", did_you_mean(key, RUN_KEYS)))
        elif value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            issues.append((f"run.{key}", f"a number >= 0; got {describe(value)}"))
        else:
            out[key] = value
    return out


# ----------------------------------------------------------------------------- building points
def _variant_dict(base: ArchConfig, over: dict[str, Any]) -> dict[str, Any]:
    d = base.to_dict()
    over = copy.deepcopy(over)
    if "sparsity" in over:
        d["sparsity"] = over.pop("sparsity")
    for stage in d["stages"]:
        new_type = over.get("kernel_type", stage["kernel_type"])
        for key, owner in TYPE_ONLY.items():
            if new_type != owner and key not in over:
                stage.pop(key, None)
        for key, types in NOT_FOR.items():
            if new_type in types and key not in over:
                stage.pop(key, None)
        stage.update(over)
    return d


def _arch(d: dict[str, Any], path: str, file: str, issues) -> ArchConfig | None:
    from lknas.space.schema import parse_space

    try:
        return parse_space(d, file).fixed()
    except SpaceError as err:
        issues.extend((path, f"{p.path}: {p.message}" if p.path else p.message) for p in err.problems)
        return None
