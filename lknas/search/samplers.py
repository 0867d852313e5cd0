"""Optuna samplers by name, seeded on the sampler itself, with constraints where supported.

The define-by-run function records each trial's constraint values (<= 0 when satisfied) before
any training: with `Trial.set_constraint` (Optuna >= 5, which the samplers read by themselves),
else as the user attribute `constraints` that `constraints_of` hands to the sampler.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from lknas.errors import LknasError
from lknas.space.configs import SAMPLERS
from lknas.limits import MAX_GRID

__all__ = ["make_sampler", "constraints_of", "record_constraints", "SAMPLER_NAMES"]

SAMPLER_NAMES = SAMPLERS  # one registry: the space file's `search.sampler` choices
NATIVE_CONSTRAINTS = hasattr(optuna.trial.Trial, "set_constraint")


def record_constraints(trial: optuna.trial.Trial, values: dict[str, float]) -> None:
    """Attach constraint values to `trial` the way this Optuna version reads them."""
    if NATIVE_CONSTRAINTS:
        for key, value in values.items():
            trial.set_constraint(key, value)
    else:
        trial.set_user_attr("constraints", list(values.values()) or [0.0])


def constraints_of(trial: FrozenTrial) -> list[float]:
    """Optuna < 5 `constraints_func`: the values `record_constraints` stored."""
    return list(trial.user_attrs.get("constraints", [0.0]))


def _constraints_kw() -> dict[str, Any]:
    return {} if NATIVE_CONSTRAINTS else {"constraints_func": constraints_of}


def make_sampler(name: str, seed: int, n_objectives: int, n_trials: int,
                 grid: dict[str, list[Any]] | None = None) -> optuna.samplers.BaseSampler:
    """A seeded sampler for a search of `n_trials`. `grid` (the space's finite dimensions, at most
    MAX_GRID combinations) is needed for `grid`; `cmaes` is single-objective only. Random start-up phases and NSGA
    populations scale with the budget (a quarter to a half of it) so a short search still learns."""
    with warnings.catch_warnings():  # multivariate/group TPE and GP are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _make(name, seed, n_objectives, n_trials, grid)


def _make(name: str, seed: int, n_objectives: int, n_trials: int,
          grid: dict[str, list[Any]] | None) -> optuna.samplers.BaseSampler:
    startup = max(2, min(10, n_trials // 2))
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                          n_startup_trials=startup, **_constraints_kw())
    if name in ("nsga2", "nsga3"):
        cls = optuna.samplers.NSGAIISampler if name == "nsga2" else optuna.samplers.NSGAIIISampler
        return cls(seed=seed, population_size=max(4, min(50, n_trials // 4)), **_constraints_kw())
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup, **_constraints_kw())
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)
    if name == "grid":
        if grid is None:
            raise LknasError("the grid sampler needs a space whose dimensions are all finite")
        total = math.prod(len(values) for values in grid.values())  # Optuna would list them all
        if total > MAX_GRID:
            raise LknasError(f"the grid sampler would enumerate {total:,} combinations, more than the {MAX_GRID:,} "
                             "it may hold in memory; use another sampler (tpe, nsga2, random, qmc) or fix some keys")
        return optuna.samplers.GridSampler(grid, seed=seed)
    if name == "cmaes":
        if n_objectives != 1:
            raise LknasError(f"sampler 'cmaes' is single-objective; this search has {n_objectives} objectives. "
                             f"Use --objectives accuracy, or --sampler tpe|nsga2|nsga3|gp|random")
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    raise LknasError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLER_NAMES)}")
