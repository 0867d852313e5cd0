"""Parse and validate a raw space mapping into a `SearchSpace`, reporting every problem at once.

Problems carry the key path (`stages[2].kernel.choice[1]`, `search.objectives[0].mode`) and say
what would be valid. Cross-key rules (kernel vs reparam / r_c / stripe_n, keys that only apply to
some kernel types or blocks, k_prime) live in `lknas.space.checks`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from lknas.arch import HEAD_NORMS, SPARSITY_GROWTH, SPARSITY_INIT, SPARSITY_SNIP_MASKS, SPARSITY_TARGETS, STEM_TYPES
from lknas.errors import Problem, SpaceError
from lknas.limits import MAX_DEPTH, MAX_PROBLEMS, MAX_STAGES, MAX_UPDATE_INTERVAL, MAX_WIDTH, MAX_WIDTH_MULTIPLIER
from lknas.space.budget import check_budget
from lknas.space.checks import check_relations, check_search
from lknas.space.configs import (
    CONSTRAINT_FIELDS, SEARCH_FIELDS, TRAIN_FIELDS, parse_constraints, parse_search, parse_train, section,
)
from lknas.space.domains import Constant, Domain
from lknas.space.fields import (
    Field, Issues, bool_field, describe, did_you_mean, enum_field, float_field, int_field, key_text, normalize,
    parse_field,
)
from lknas.space.resolve import Template
from lknas.space.stage_fields import STAGE_FIELDS
from lknas.space.structure import check_structure

STAGE_ONLY = ("depth", "width", "downsample")
GLOBAL_FIELDS: dict[str, Field] = {
    "width_multiplier": float_field("width_multiplier", 0, MAX_WIDTH_MULTIPLIER, lo_open=True),
    **{k: f for k, f in STAGE_FIELDS.items() if k not in STAGE_ONLY},
}
STEM_FIELDS = {"type": enum_field("stem type", STEM_TYPES), "width": int_field("stem width", 1, MAX_WIDTH)}
HEAD_FIELDS = {"norm": enum_field("head norm", HEAD_NORMS),
               "dropout": float_field("head dropout", 0, 1, hi_open=True)}
SPARSITY_FIELDS = {
    "enabled": bool_field("enabled"),
    "density": float_field("density", 0, 1, lo_open=True),
    "prune_rate": float_field("prune_rate", 0, 1, hi_open=True),
    "update_interval": int_field("update_interval", 1, MAX_UPDATE_INTERVAL),
    "growth": enum_field("growth", SPARSITY_GROWTH),
    "init": enum_field("init", SPARSITY_INIT),
    "targets": enum_field("targets", SPARSITY_TARGETS),
    "snip_mask": enum_field("snip_mask", SPARSITY_SNIP_MASKS),
}
DROP_PATH_FIELD = float_field("drop_path", 0, 1, hi_open=True)
SECTIONS = ("name", "description", "stem", "stages", "width_multiplier", "drop_path", "head", "sparsity",
            "constraints", "train", "search", "provenance")
TOP_KEYS = SECTIONS + tuple(k for k in GLOBAL_FIELDS if k != "width_multiplier")
_ALL_FIELDS: dict[str, Field] = {**SPARSITY_FIELDS, **HEAD_FIELDS, **STEM_FIELDS, **GLOBAL_FIELDS,
                                 **STAGE_FIELDS, "drop_path": DROP_PATH_FIELD}


def schema_fields() -> dict[str, Field]:
    """Every key of a space file that takes a value, by its key path: stage keys (which also serve
    as top-level defaults) and `drop_path` bare, the rest with their section (`stem.width`,
    `sparsity.density`, `train.lr`, `search.trials`, `constraints.max_params`). The docs and the
    tests derive their key lists from here."""
    out: dict[str, Field] = {**STAGE_FIELDS, **GLOBAL_FIELDS, "drop_path": DROP_PATH_FIELD}
    for prefix, fields in (("stem", STEM_FIELDS), ("head", HEAD_FIELDS), ("sparsity", SPARSITY_FIELDS),
                           ("train", TRAIN_FIELDS), ("search", SEARCH_FIELDS), ("constraints", CONSTRAINT_FIELDS)):
        out.update({f"{prefix}.{key}": f for key, f in fields.items()})
    return out


def normalize_value(key: str, value: Any) -> Any:
    """Canonical form of a value picked for `key` (ints of float keys become floats, lists tuples)."""
    return normalize(_ALL_FIELDS[key], value) if key in _ALL_FIELDS else value


def parse_space(data: Any, file: str = "<dict>") -> "SearchSpace":
    """Validate a raw mapping (a parsed space file) into a SearchSpace; raise SpaceError listing
    every problem found."""
    from lknas.space.space import SearchSpace

    if not isinstance(data, dict):
        raise SpaceError([Problem(file, "", "a space file must be a mapping with at least a 'stages' list; "
                                            f"got {describe(data)}")])
    check_structure(data, file)  # nothing below may hang on aliases, cycles or deep nesting
    issues: Issues = []
    for key in data:
        if key not in TOP_KEYS:
            issues.append((key_text(key), did_you_mean(key, TOP_KEYS)))
    name = _text(data, "name", issues) or (Path(file).stem if not file.startswith("<") else "space")
    description = _text(data, "description", issues) or ""
    if data.get("provenance") is not None and not isinstance(data["provenance"], dict):
        issues.append(("provenance", "provenance is free-form metadata (where an architecture came from) and "
                                     f"must be a mapping; got {describe(data['provenance'])}"))
    t = Template()
    for key, value in data.items():
        if key in GLOBAL_FIELDS:
            dom = parse_field(GLOBAL_FIELDS[key], value, key, issues)
            if dom is not None:
                t.globals[key] = dom
    t.stages = _stages(data.get("stages"), "stages" in data, issues)
    if "kernel" not in data and isinstance(data.get("stages"), list):
        for i, stage in enumerate(data["stages"]):
            if isinstance(stage, dict) and "kernel" not in stage:
                issues.append((f"stages[{i}].kernel", "missing: set kernel on the stage or at the top level "
                                                      "(an odd size, a list of odd sizes, or a domain)"))
    t.stem = _mapping(data.get("stem"), "stem", STEM_FIELDS, issues)
    t.head = _mapping(data.get("head"), "head", HEAD_FIELDS, issues)
    t.sparsity = _sparsity(data.get("sparsity"), issues)
    if "drop_path" in data:
        t.drop_path = parse_field(DROP_PATH_FIELD, data["drop_path"], "drop_path", issues) or Constant(0.0)
    train = parse_train(data.get("train"), issues)
    t.train = {k: v for k, v in (("lr", train.lr), ("weight_decay", train.weight_decay)) if isinstance(v, Domain)}
    search = parse_search(data.get("search"), issues)
    constraints = parse_constraints(data.get("constraints"), issues, train.resolution)
    if t.stages:
        check_relations(t, issues)
        check_search(t, search, issues)
        if not issues:  # the estimate needs a valid space
            check_budget(t, train.resolution, train.batch_size, train.num_classes, issues)
    if issues:
        raise SpaceError(_capped([Problem(file, path, msg) for path, msg in dict.fromkeys(issues)], file))
    return SearchSpace(file=file, name=name, description=description, template=t, train=train,
                       search=search, constraints=constraints, raw=data)


def _capped(problems: list[Problem], file: str) -> list[Problem]:
    """At most MAX_PROBLEMS problems, the rest counted in a last one."""
    if len(problems) <= MAX_PROBLEMS:
        return problems
    rest = len(problems) - MAX_PROBLEMS
    return problems[:MAX_PROBLEMS] + [Problem(file, "", f"... and {rest:,} more problems (fix these first)")]


def _text(data: dict[str, Any], key: str, issues: Issues) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        issues.append((key, f"{key} must be a string; got {describe(value)}"))
        return None
    return value


def _mapping(raw: Any, path: str, fields: dict[str, Field], issues: Issues) -> dict[str, Domain]:
    out: dict[str, Domain] = {}
    for key, value in section(raw, path, issues).items():
        if key not in fields:
            issues.append((f"{path}.{key_text(key)}", did_you_mean(key, fields)))
            continue
        dom = parse_field(fields[key], value, f"{path}.{key}", issues)
        if dom is not None:
            out[key] = dom
    return out


def _stages(raw: Any, present: bool, issues: Issues) -> list[dict[str, Domain]]:
    if not present or raw is None:
        issues.append(("stages", "missing: a space needs a non-empty list of stages, "
                                 "e.g. stages: [{depth: 3, width: 96, kernel: 7}, ...]"))
        return []
    if not isinstance(raw, list) or not raw:
        issues.append(("stages", f"stages must be a non-empty list of stage mappings; got {describe(raw)}"))
        return []
    if len(raw) > MAX_STAGES:
        issues.append(("stages", f"a network has at most {MAX_STAGES} stages; got {len(raw)}"))
        return []
    stages = []
    for i, stage in enumerate(raw):
        path = f"stages[{i}]"
        if not isinstance(stage, dict):
            issues.append((path, f"a stage must be a mapping with depth, width and kernel; got {describe(stage)}"))
            stages.append({})
            continue
        stages.append(_mapping(stage, path, STAGE_FIELDS, issues))
        for key, what in (("depth", f"the number of blocks, an integer from 1 to {MAX_DEPTH}"),
                          ("width", f"the number of channels, an integer from 1 to {MAX_WIDTH}")):
            if key not in stage:
                issues.append((f"{path}.{key}", f"missing: every stage needs {key} ({what})"))
    return stages


def _sparsity(raw: Any, issues: Issues) -> dict[str, Domain] | None:
    if raw is None or raw is False:
        return None
    if raw is True:
        return {}
    out = _mapping(raw, "sparsity", SPARSITY_FIELDS, issues)
    enabled = out.get("enabled")
    if isinstance(enabled, Constant) and not enabled.value:
        return None
    if not isinstance(raw, dict):
        return None
    return out
