"""The non-architecture sections of a space file: `train`, `search` and `constraints`.

Each is a frozen dataclass with the documented defaults and a `to_dict()` in space-file form.
`parse_train`, `parse_search` and `parse_constraints` validate the raw mappings, collecting problems.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from lknas.limits import (
    MAX_BATCH_SIZE, MAX_CLASSES, MAX_CONCURRENT, MAX_COUNT, MAX_CPUS_PER_TRIAL, MAX_EPOCHS, MAX_GPUS_PER_TRIAL, MAX_LR,
    MAX_REDUCTION_FACTOR, MAX_RESOLUTION, MAX_RETIME_ROUNDS, MAX_SECONDS, MAX_SEED, MAX_STEPS, MAX_SUBSET,
    MAX_TRIAL_SEEDS, MAX_TRIALS, MAX_WEIGHT_DECAY, MIN_RESOLUTION,
)
from lknas.space.domains import Constant, Domain
from lknas.space.fields import (
    Field, Invalid, Issues, bool_field, describe, did_you_mean, enum_field, float_field, int_field,
    is_number, key_text, parse_field, str_field,
)

OPTIMIZERS = ("adamw", "sgd", "adam", "lamb", "lion")
SAMPLERS = ("tpe", "nsga2", "nsga3", "gp", "random", "qmc", "grid", "cmaes")
SCHEDULERS = ("fifo", "asha", "moasha")  # moasha: lknas.search.moasha
OBJECTIVE_MODES = {"accuracy": "max", "latency": "min", "params": "min", "flops": "min", "erf": "max"}


@dataclass(frozen=True)
class TrainConfig:
    """Proxy-training settings. `lr` and `weight_decay` may be domains (searched with the arch)."""

    dataset: str = "pathfinder"
    resolution: int = 64
    epochs: int = 10
    steps: int | None = None
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float | Domain = 2e-3
    weight_decay: float | Domain = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    num_classes: int | None = None
    subset: int | None = None
    time_limit: float | None = None
    seed: int = 0
    data_seed: int | None = None  # a synthetic data set's seed; None: `seed` (a re-training with another
    # seed keeps the data set: lknas.search.confirm, lknas fidelity)
    order_seed: int | None = None  # the seed of the training batches' order; None: `seed`
    curriculum: str | None = None  # an easier data set trained on first (e.g. shorter distances)
    curriculum_fraction: float = 0.25  # the share of the steps spent on it
    curriculum_ramp: bool = False  # over those steps the full task's share of each batch rises from 0 to 1
    ema_decay: float | None = None  # evaluate an EMA of the weights (timm's ModelEmaV3) with this decay
    schedule: str | None = None  # None (written `cosine`): one cosine; `restart`: a second one when the curriculum ends
    zero_init_last: bool = False  # every residual branch's last BN scale starts at 0 (timm's zero_init_last)
    layout: str = "auto"  # memory layout: nchw | channels_last | auto (measured fastest; LKNAS_LAYOUT overrides auto)

    @property
    def is_fixed(self) -> bool:
        return not any(isinstance(v, Domain) for v in (self.lr, self.weight_decay))

    @property
    def data_set_seed(self) -> int:
        """The seed that draws a synthetic data set: `data_seed`, else `seed`."""
        return self.seed if self.data_seed is None else self.data_seed

    @property
    def batch_order_seed(self) -> int:
        """The seed that orders the training batches: `order_seed`, else `seed`."""
        return self.seed if self.order_seed is None else self.order_seed

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _raw(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Objective:
    name: str
    mode: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "mode": self.mode}


DEFAULT_OBJECTIVES = (Objective("accuracy", "max"), Objective("latency", "min"))


@dataclass(frozen=True)
class SearchConfig:
    """How to search: sampler, objectives, trial count and Ray Tune resources."""

    sampler: str = "tpe"
    objectives: tuple[Objective, ...] = DEFAULT_OBJECTIVES
    trials: int = 20
    scheduler: str = "fifo"
    grace_period: int = 1  # asha / moasha: epochs before a trial can be stopped (the first rung)
    reduction_factor: float = 2.0  # asha / moasha: the top 1/reduction_factor of each rung continues
    seed: int = 0
    max_concurrent: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    time_budget: float | None = None
    confirm: int | str = "auto"  # extra seeds for the Pareto set after the search (see lknas.search.confirm)
    retime: int = 3  # quiet re-timing rounds of the latency front after the search (see lknas.search.retime)
    trial_seeds: int = 1  # training seeds per trial, its accuracy their mean (a noisy proxy: `lknas fidelity`)

    @property
    def directions(self) -> list[str]:
        """Optuna study directions, one per objective."""
        return ["maximize" if o.mode == "max" else "minimize" for o in self.objectives]

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["objectives"] = [o.to_dict() for o in self.objectives]
        return data


@dataclass(frozen=True)
class Constraints:
    """Hard limits on a sampled architecture, measured at `resolution`."""

    max_params: int | None = None
    min_params: int | None = None
    max_flops: int | None = None
    min_flops: int | None = None
    resolution: int = 64

    def violations(self, params: float | None = None, flops: float | None = None) -> list[str]:
        """Human-readable reasons why measured params / FLOPs break the limits (empty if none)."""
        out = []
        for what, value in (("params", params), ("flops", flops)):
            lo, hi = getattr(self, f"min_{what}"), getattr(self, f"max_{what}")
            if value is not None and hi is not None and value > hi:
                out.append(f"{what} {value:,.0f} > max_{what} {hi:,}")
            if value is not None and lo is not None and value < lo:
                out.append(f"{what} {value:,.0f} < min_{what} {lo:,}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _raw(v: Any) -> Any:
    return v.to_raw() if isinstance(v, Domain) else v


# ----------------------------------------------------------------------------- parsing
def _schedule(value: Any) -> str | None:
    """train.schedule: `cosine` (the default, stored as None so that trials recorded before the key
    existed stay the same experiment; a stored None reads back as cosine) or `restart`."""
    if value is None:
        return None
    value = enum_field("schedule", ("cosine", "restart"), searchable=False).check(value)
    return None if value == "cosine" else value


TRAIN_FIELDS: dict[str, Field] = {
    "dataset": str_field("dataset"),
    "resolution": int_field("resolution", MIN_RESOLUTION, MAX_RESOLUTION, searchable=False),
    "epochs": int_field("epochs", 1, MAX_EPOCHS, searchable=False),
    "steps": int_field("steps", 1, MAX_STEPS, nullable=True, searchable=False),
    "batch_size": int_field("batch_size", 1, MAX_BATCH_SIZE, searchable=False),
    "optimizer": enum_field("optimizer", OPTIMIZERS, searchable=False),
    "lr": float_field("lr", 0, MAX_LR, lo_open=True),
    "weight_decay": float_field("weight_decay", 0, MAX_WEIGHT_DECAY),
    "warmup_epochs": float_field("warmup_epochs", 0, MAX_EPOCHS, searchable=False),
    "label_smoothing": float_field("label_smoothing", 0, 1, hi_open=True, searchable=False),
    "num_classes": int_field("num_classes", 1, MAX_CLASSES, nullable=True, searchable=False),
    "subset": int_field("subset", 1, MAX_SUBSET, nullable=True, searchable=False),
    "time_limit": float_field("time_limit", 0, MAX_SECONDS, lo_open=True, nullable=True, searchable=False),
    "seed": int_field("seed", 0, MAX_SEED, searchable=False),
    "data_seed": int_field("data_seed", 0, MAX_SEED, nullable=True, searchable=False),
    "order_seed": int_field("order_seed", 0, MAX_SEED, nullable=True, searchable=False),
    "curriculum": str_field("curriculum", nullable=True),
    "curriculum_fraction": float_field("curriculum_fraction", 0, 1, lo_open=True, hi_open=True, searchable=False),
    "curriculum_ramp": bool_field("curriculum_ramp", searchable=False),
    "ema_decay": float_field("ema_decay", 0, 1, lo_open=True, hi_open=True, nullable=True, searchable=False),
    "schedule": Field("schedule", "enum", lambda v: _schedule(v), False, valid="cosine, restart"),
    "layout": enum_field("layout", ("auto", "nchw", "channels_last"), searchable=False),
    "zero_init_last": bool_field("zero_init_last", searchable=False),
}
SEARCH_FIELDS: dict[str, Field] = {
    "sampler": enum_field("sampler", SAMPLERS, searchable=False),
    "trials": int_field("trials", 1, MAX_TRIALS, searchable=False),
    "scheduler": enum_field("scheduler", SCHEDULERS, searchable=False),
    "grace_period": int_field("grace_period", 1, MAX_EPOCHS, searchable=False),
    "reduction_factor": float_field("reduction_factor", 1, MAX_REDUCTION_FACTOR, lo_open=True, searchable=False),
    "seed": int_field("seed", 0, MAX_SEED, searchable=False),
    "max_concurrent": int_field("max_concurrent", 1, MAX_CONCURRENT, nullable=True, searchable=False),
    "cpus_per_trial": float_field("cpus_per_trial", 0, MAX_CPUS_PER_TRIAL, lo_open=True, searchable=False),
    "gpus_per_trial": float_field("gpus_per_trial", 0, MAX_GPUS_PER_TRIAL, searchable=False),
    "time_budget": float_field("time_budget", 0, MAX_SECONDS, lo_open=True, nullable=True, searchable=False),
    "retime": int_field("retime", 0, MAX_RETIME_ROUNDS, searchable=False),
    "trial_seeds": int_field("trial_seeds", 1, MAX_TRIAL_SEEDS, searchable=False),
}
SEARCH_KEYS = ("sampler", "objectives", "trials", "scheduler", "grace_period", "reduction_factor", "seed",
               "max_concurrent", "cpus_per_trial", "gpus_per_trial", "time_budget", "confirm", "retime", "trial_seeds")
MAX_CONFIRM_SEEDS = 10


def section(raw: Any, path: str, issues: Issues) -> dict[str, Any]:
    """A section's mapping ({} for absent/null); a problem if it is something else."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        issues.append((path, f"{path} must be a mapping of keys to values; got {describe(raw)}"))
        return {}
    return raw


def _fields(raw: dict[str, Any], fields: dict[str, Field], keys: tuple[str, ...], path: str,
            issues: Issues, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in skip:
            continue
        if key not in fields:
            issues.append((f"{path}.{key_text(key)}", did_you_mean(key, keys)))
            continue
        dom = parse_field(fields[key], value, f"{path}.{key}", issues)
        if dom is not None:
            out[key] = dom.value if isinstance(dom, Constant) else dom
    return out


def parse_train(raw: Any, issues: Issues) -> TrainConfig:
    data = section(raw, "train", issues)
    return TrainConfig(**_fields(data, TRAIN_FIELDS, tuple(TRAIN_FIELDS), "train", issues))


def parse_objectives(raw: Any, issues: Issues) -> tuple[Objective, ...]:
    path = "search.objectives"
    if not isinstance(raw, list) or not raw:
        issues.append((path, "objectives must be a non-empty list, e.g. [accuracy, latency] or "
                             "[{name: accuracy, mode: max}]; got " + describe(raw)))
        return DEFAULT_OBJECTIVES
    names = tuple(OBJECTIVE_MODES)
    out: list[Objective] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        p = f"{path}[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            issues.append((p, f"an objective is a name ({', '.join(names)}) or {{name: ..., mode: max|min}}; "
                              f"got {describe(item)}"))
            continue
        for key in item:
            if key not in ("name", "mode"):
                issues.append((f"{p}.{key_text(key)}", did_you_mean(key, ("name", "mode"))))
        try:
            name = enum_field("objective name", names).check(item.get("name"))
        except Invalid as err:
            issues.append((f"{p}.name", err.message))
            continue
        if name in seen:
            issues.append((p, f"objective '{name}' is listed twice; list each objective once"))
            continue
        seen.add(name)
        mode = item.get("mode", OBJECTIVE_MODES[name])
        if mode not in ("max", "min"):
            issues.append((f"{p}.mode", f"mode must be max or min; got {describe(mode)}"))
            continue
        out.append(Objective(name, mode))
    return tuple(out) or DEFAULT_OBJECTIVES


def parse_confirm(value: Any) -> int | str:
    """'auto' or a number of extra seeds 0..MAX_CONFIRM_SEEDS; raises Invalid otherwise."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_CONFIRM_SEEDS:
        return value
    raise Invalid(f"confirm must be auto or a number of extra seeds 0..{MAX_CONFIRM_SEEDS}; got {describe(value)}")


def parse_search(raw: Any, issues: Issues) -> SearchConfig:
    data = section(raw, "search", issues)
    values = _fields(data, SEARCH_FIELDS, SEARCH_KEYS, "search", issues, skip=("objectives", "confirm"))
    if "objectives" in data:
        values["objectives"] = parse_objectives(data["objectives"], issues)
    if "confirm" in data:
        try:
            values["confirm"] = parse_confirm(data["confirm"])
        except Invalid as err:
            issues.append(("search.confirm", err.message))
    return SearchConfig(**values)


_COUNT_MAX = f"1e{len(str(MAX_COUNT)) - 1}"  # '1e15'
_SUFFIX = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_COUNT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:e([+-]?\d+))?\s*([kmgt]?)\s*$", re.IGNORECASE)


def parse_count(value: Any) -> int:
    """5, 5e6, '5M', '1.2G', '300k' -> an integer count in 0..MAX_COUNT; raises Invalid otherwise."""
    number = None
    if is_number(value):
        number = value
    elif isinstance(value, str) and len(value) <= 40:
        m = _COUNT.match(value)
        if m:
            number = float(m.group(1) + (f"e{m.group(2)}" if m.group(2) else "")) * _SUFFIX[m.group(3).lower()]
    if number is not None and 0 <= number <= MAX_COUNT:  # False for nan and inf
        return int(round(number))
    raise Invalid(f"expected a number from 0 to {_COUNT_MAX} such as 5000000, '5M', '1.2G' or '300k'; "
                  f"got {describe(value)}")


def count_field(name: str) -> Field:
    """A params / FLOPs count (null: no limit)."""
    def check(v: Any) -> Any:
        if v is None:
            return None
        try:
            return parse_count(v)
        except Invalid as err:
            raise Invalid(f"{name}: {err.message}") from None

    return Field(name, "count", check, searchable=False, valid=f"0..{_COUNT_MAX}, or '5M', '1.2G', '300k'; or null",
                 high=MAX_COUNT)


CONSTRAINT_FIELDS: dict[str, Field] = {
    **{key: count_field(key) for key in ("max_params", "min_params", "max_flops", "min_flops")},
    "resolution": TRAIN_FIELDS["resolution"],
}


def parse_constraints(raw: Any, issues: Issues, default_resolution: int) -> Constraints:
    data = section(raw, "constraints", issues)
    values = {k: v for k, v in _fields(data, CONSTRAINT_FIELDS, tuple(CONSTRAINT_FIELDS), "constraints",
                                       issues).items() if v is not None}
    values.setdefault("resolution", default_resolution)
    for what in ("params", "flops"):
        lo, hi = values.get(f"min_{what}"), values.get(f"max_{what}")
        if lo is not None and hi is not None and lo > hi:
            issues.append((f"constraints.min_{what}", f"min_{what} {lo:,} is greater than max_{what} {hi:,}; "
                                                      f"min must be <= max"))
    return Constraints(**values)
