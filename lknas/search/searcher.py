"""Ray Tune's `OptunaSearch`, told our trial statuses.

The stock searcher tells Optuna whatever the last result holds. A search trial ends in one of
our statuses, and each maps to an Optuna state: `ok` and `infeasible` are COMPLETE with their
objective values (infeasible ones carry constraint violations, so the sampler ranks them below
every feasible trial); `truncated` (early-stopped) is PRUNED; `error`, `diverged` and `oom` are
FAIL, so no made-up value ever reaches the sampler.
"""
from __future__ import annotations

import logging
from typing import Any

from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from lknas.search.objectives import objective_values
from lknas.space.configs import Objective
from lknas.status import status_of

__all__ = ["LknasOptunaSearch", "optuna_state"]

logger = logging.getLogger(__name__)


def optuna_state(status: str | None) -> TrialState:
    """The Optuna state of a trial that ended with `status` (`TrialStatus.optuna_state_name`); FAIL
    for a missing or unknown one."""
    known = status_of(status)
    return TrialState[known.optuna_state_name] if known is not None else TrialState.FAIL


class LknasOptunaSearch(OptunaSearch):
    """OptunaSearch (define-by-run) for lknas objectives; see the module docstring."""

    def __init__(self, *args: Any, objectives: tuple[Objective, ...], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._objectives = objectives

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if isinstance(self.metric, list) or self.metric not in result:
            return
        super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        result = result or {}
        state = TrialState.FAIL if error else optuna_state(result.get("status"))
        values = objective_values(result, self._objectives) if state == TrialState.COMPLETE else None
        if values is None and state == TrialState.COMPLETE:
            state = TrialState.FAIL
        if state == TrialState.PRUNED and not isinstance(self.metric, list):
            values = None
        try:
            told = values if values is None or isinstance(self.metric, list) else values[0]
            self._ot_study.tell(self._ot_trials[trial_id], told, state=state)
        except Exception as exc:  # never let bookkeeping kill the search
            logger.warning("could not tell Optuna about trial %s: %s", trial_id, exc)
        self._completed_trials.add(trial_id)
