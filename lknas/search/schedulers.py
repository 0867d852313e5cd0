"""Ray Tune trial schedulers by name: the space file's `search.scheduler` (`SCHEDULERS`).

- `fifo`: every trial trains in full.
- `asha`: Ray's ASHA on the first objective (its rung metric).
- `moasha`: `lknas.search.moasha`, on every objective known during training.

asha and moasha share `search.grace_period` and `search.reduction_factor`; their max budget is a
trial's own training (`trial_epochs`: the epochs its reports count), so no trial is cut short of it.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from lknas.errors import LknasError
from lknas.search.objectives import metric_of
from lknas.space.configs import SCHEDULERS, SearchConfig

__all__ = ["make_scheduler", "check_scheduler", "BUILDERS"]


def _fifo(search: SearchConfig, max_t: int, rows: Iterable[dict[str, Any]]):
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def _asha(search: SearchConfig, max_t: int, rows: Iterable[dict[str, Any]]):
    from ray.tune.schedulers import ASHAScheduler

    first = search.objectives[0]
    return ASHAScheduler(metric=metric_of(first), mode=first.mode, time_attr="training_iteration",
                         max_t=max(max_t, search.grace_period), grace_period=search.grace_period,
                         reduction_factor=search.reduction_factor)


def _moasha(search: SearchConfig, max_t: int, rows: Iterable[dict[str, Any]]):
    from lknas.search.moasha import MOASHAScheduler

    scheduler = MOASHAScheduler(search.objectives, max_t=max_t, grace_period=search.grace_period,
                                reduction_factor=search.reduction_factor)
    scheduler.seed_rows(rows)
    return scheduler


BUILDERS: dict[str, Callable[..., Any]] = {"fifo": _fifo, "asha": _asha, "moasha": _moasha}
assert tuple(BUILDERS) == SCHEDULERS, "lknas.space.configs.SCHEDULERS and BUILDERS name the same schedulers"


def check_scheduler(search: SearchConfig, max_t: int) -> None:
    """Fail before Ray starts when moasha could never stop a trial.

    Raises:
        LknasError: naming search.grace_period (--grace-period) and the trials' epoch count.
    """
    if search.scheduler == "moasha" and search.grace_period >= max_t:
        raise LknasError(f"search.grace_period (--grace-period) is {search.grace_period}, but each trial trains "
                         f"{max_t} epoch(s) (train.epochs, or train.steps rounded up to epochs): moasha could never "
                         f"stop a trial. Lower the grace period below {max_t}, train more epochs, or use scheduler fifo")


def make_scheduler(search: SearchConfig, max_t: int, rows: Iterable[dict[str, Any]] = ()):
    """The Ray Tune scheduler `search.scheduler` for trials of `max_t` epochs; `rows` (the run's log
    at a resume) refill moasha's rungs."""
    check_scheduler(search, max_t)
    return BUILDERS[search.scheduler](search, max_t, rows)
