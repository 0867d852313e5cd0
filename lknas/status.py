"""How a trial ended: one named set of states for the trainer, the search, the studies and reports.

A `TrialStatus` is a `str` (its value is what trials.jsonl, trials.csv and the Ray results hold, and
it compares and hashes as that string: `"ok" in {TrialStatus.OK}`, `df["status"] == TrialStatus.OK`),
and it carries what the states mean, as Optuna's `TrialState` does: which ones trained a model
(`trained`) and which Optuna state the search reports for each (`optuna_state_name`); `FAILED`
lists the failed ones.
"""
from __future__ import annotations

from enum import Enum


class TrialStatus(str, Enum):
    OK = "ok"  # trained to its budget (or its time limit) and measured: the only status on a Pareto front
    STOPPED = "stopped"  # the trainer's report callback asked it to stop; its numbers so far are kept
    TRUNCATED = "truncated"  # a search trial stopped before its last report (by a scheduler such as ASHA)
    INFEASIBLE = "infeasible"  # over the space's constraints: not trained
    DIVERGED = "diverged"  # the loss became NaN or infinite
    OOM = "oom"  # out of memory
    ERROR = "error"  # an exception in the trial or its worker
    RUNNING = "running"  # not finished yet (a resumed search's view)

    __str__ = str.__str__  # "ok", in f-strings too, on every Python version
    __format__ = str.__format__

    def __hash__(self) -> int:  # as its value: a set or dict of statuses finds the plain string
        return str.__hash__(self)

    @property
    def trained(self) -> bool:
        """A model was trained, to its budget or until asked to stop: its accuracy means something."""
        return self in (TrialStatus.OK, TrialStatus.STOPPED)

    @property
    def optuna_state_name(self) -> str:
        """The Optuna `TrialState` the search reports: COMPLETE for a measured or infeasible trial
        (the constraint is its result), PRUNED for one stopped early or still running, FAIL else."""
        if self in (TrialStatus.OK, TrialStatus.INFEASIBLE):
            return "COMPLETE"
        if self in (TrialStatus.TRUNCATED, TrialStatus.RUNNING):
            return "PRUNED"
        return "FAIL"


FAILED = frozenset({TrialStatus.ERROR, TrialStatus.DIVERGED, TrialStatus.OOM})
# what a proxy run (`lknas.train.train_proxy`) ends with
PROXY_STATUSES = (TrialStatus.OK, TrialStatus.STOPPED, TrialStatus.DIVERGED, TrialStatus.OOM)


def status_of(value: object) -> TrialStatus | None:
    """The status a record holds (a string from a file, or None/NaN when it has none)."""
    try:
        return TrialStatus(value)
    except ValueError:
        return None
