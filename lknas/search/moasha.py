"""MO-ASHA: asynchronous successive halving that stops trials on every objective.

Schmucker et al. (2021), "Multi-objective multi-fidelity hyperparameter optimization with
application to fairness", after Salinas et al. (2021); written for Ray Tune in the shape of its
`AsyncHyperBandScheduler`. ASHA ranks a rung on one metric, so with accuracy and latency as
objectives a fast net of middling accuracy is stopped as readily as a slow one; here a rung is
ranked on every objective it can see.

What a rung sees. Each trial reports once an epoch (`training_iteration`), and every report
carries the trial's accuracy at that epoch and its costs (latency, params, FLOPs: measured before
training, `lknas.search.trial._static`), so the costs count from the first rung. The ERF is
measured on the trained network only: it is left out of rung comparisons (`RUNG_OBJECTIVES`).

Rungs. With grace period g, reduction factor eta and a full training of E epochs (max budget: the
trial's own epochs, or its steps rounded up to epochs), rung k is at epoch ceil(g * eta**k), for
every such epoch below E (a decision at E would come after the training is done).

Promotion rule, when a trial reports at a rung's epoch:
1. its vector (accuracy at that epoch, then the cost objectives, each with its mode) is recorded;
2. if fewer than eta trials were recorded there before it, it continues (as ASHA does);
3. else the n trials recorded there are ordered: by non-dominated sorting (front 1 first), and
   within a front by a greedy epsilon-net (the paper's choice): objectives min-max normalized
   over that front, the front's best accuracy first, then repeatedly the trial farthest
   (Euclidean) from those already taken; exact ties by recording order, earlier first. The
   ordering puts the extremes and a spread of the front ahead of points crowded together.
4. it continues if its position is among the first floor(n / eta) (the top 1/eta), else stops.
A stopped trial ends with its last report (its last rung's epoch) as its record, status
`truncated`; the searcher tells Optuna PRUNED with no values, so a partial accuracy never
reaches the sampler as a final one. Failed, infeasible and finished reports are not ranked.

Resume: `seed_rows` refills the rungs from the run's log (each trained trial's `accuracy_curve`
and costs), so decisions after a resume compare with the trials run before it.
"""
from __future__ import annotations

import logging
import math
import pickle
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from lknas.search.hypervolume import minimized
from lknas.search.noise import is_confirm
from lknas.search.objectives import metric_of
from lknas.search.store import nondominated_fronts
from lknas.search.trial import CURVE_KEY
from lknas.space.configs import Objective
from lknas.status import TrialStatus

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

__all__ = ["MOASHAScheduler", "RUNG_OBJECTIVES", "Decision", "decide", "rung_order", "nondominated_fronts",
           "spread_order", "rung_epochs", "rung_objectives"]

logger = logging.getLogger(__name__)

RUNG_OBJECTIVES = ("accuracy", "latency", "params", "flops")  # known at every epoch's report


def rung_objectives(objectives: Sequence[Objective]) -> tuple[Objective, ...]:
    """The objectives a rung ranks on: accuracy first, then the search's cost objectives in order."""
    seen = [o for o in objectives if o.name in RUNG_OBJECTIVES]
    return tuple(sorted(seen, key=lambda o: o.name != "accuracy"))


def rung_epochs(grace_period: int, reduction_factor: float, max_t: int) -> list[int]:
    """Epochs ceil(grace_period * reduction_factor**k) below max_t, ascending, without repeats."""
    out, k = [], 0
    while True:
        epoch = math.ceil(grace_period * reduction_factor ** k - 1e-9)
        if epoch >= max_t:
            return out
        if not out or epoch > out[-1]:
            out.append(epoch)
        k += 1


def spread_order(values: np.ndarray) -> list[int]:
    """A greedy epsilon-net order of the rows of one front (every column minimized): the best row in
    column 0 first, then each time the row farthest from those taken, on columns min-max normalized
    over the front; ties go to the earlier row."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return []
    lo, hi = values.min(axis=0), values.max(axis=0)
    norm = (values - lo) / np.where(hi > lo, hi - lo, 1.0)
    order = [int(np.lexsort(values.T[::-1])[0])]  # best column 0, ties by the next columns, then row
    nearest = np.linalg.norm(norm - norm[order[0]], axis=1)
    while len(order) < len(values):
        nearest[order] = -1.0
        pick = int(np.argmax(nearest))  # argmax takes the first of equal distances: the earlier row
        order.append(pick)
        nearest = np.minimum(nearest, np.linalg.norm(norm - norm[pick], axis=1))
    return order


def rung_order(values: np.ndarray) -> list[int]:
    """Every row of a rung table (every column minimized), best first: fronts in order, each front
    in `spread_order`."""
    values = np.asarray(values, dtype=float)
    return [front[i] for front in nondominated_fronts(values) for i in spread_order(values[front])]


@dataclass(frozen=True)
class Decision:
    promote: bool
    position: int  # 0-based place of the trial in its rung's order
    kept: int  # how many of the rung's trials continue: floor(n / eta); n when n <= eta
    recorded: int  # n: trials recorded at the rung, this one included

    def text(self) -> str:
        if self.recorded <= self.kept:
            return f"continues: {self.recorded} trial(s) at the rung, fewer than the reduction factor + 1"
        verb = "continues" if self.promote else "stopped"
        return f"{verb}: ranked {self.position + 1} of {self.recorded} at the rung, which keeps the top {self.kept}"


def decide(recorded: Sequence[Sequence[float]], new: Sequence[float], modes: Sequence[str],
           reduction_factor: float) -> Decision:
    """Whether a trial reaching a rung with objective vector `new` continues, given the vectors
    `recorded` there before it (same columns; `modes` max/min per column). See the module docstring.

    Raises:
        ValueError: reduction_factor <= 1, or vectors whose length differs from `modes`.
    """
    if not reduction_factor > 1:
        raise ValueError(f"reduction_factor must be > 1; got {reduction_factor}")
    table = [list(map(float, row)) for row in recorded] + [list(map(float, new))]
    if any(len(row) != len(modes) for row in table):
        raise ValueError(f"every rung vector needs {len(modes)} values ({', '.join(modes)})")
    n = len(table)
    if len(recorded) < reduction_factor:
        return Decision(True, n - 1, n, n)
    kept = max(1, math.floor(n / reduction_factor + 1e-9))
    position = rung_order(minimized(np.array(table), modes)).index(n - 1)
    return Decision(position < kept, position, kept, n)


class MOASHAScheduler(FIFOScheduler):
    """Multi-objective ASHA for Ray Tune (see the module docstring for the rule).

    Args:
        objectives: the search's objectives; those in RUNG_OBJECTIVES (accuracy among them) rank the rungs.
        max_t: a trial's full training, in reports (epochs).
        grace_period: the first rung's epoch.
        reduction_factor: eta: the top 1/eta of each rung continues.
        time_attr: the result key that counts a trial's reports.

    Raises:
        ValueError: no accuracy objective, grace_period < 1, reduction_factor <= 1 or max_t < 1.
    """

    def __init__(self, objectives: Sequence[Objective], max_t: int, grace_period: int = 1,
                 reduction_factor: float = 2.0, time_attr: str = "training_iteration"):
        super().__init__()
        self.objectives = rung_objectives(objectives)
        if not self.objectives or self.objectives[0].name != "accuracy":
            raise ValueError("MO-ASHA ranks trials on their accuracy during training: add accuracy to the objectives")
        if grace_period < 1 or not reduction_factor > 1 or max_t < 1:
            raise ValueError(f"need grace_period >= 1, reduction_factor > 1 and max_t >= 1; got {grace_period}, "
                             f"{reduction_factor}, {max_t}")
        self.metrics = [metric_of(o) for o in self.objectives]
        self.modes = [o.mode for o in self.objectives]
        self.max_t, self.grace_period, self.reduction_factor = int(max_t), int(grace_period), float(reduction_factor)
        self.time_attr = time_attr
        self.rungs: dict[int, dict[Any, tuple[float, ...]]] = {
            e: {} for e in rung_epochs(grace_period, reduction_factor, max_t)}
        self.decisions: list[tuple[Any, int, Decision]] = []  # (trial number, rung epoch, decision)
        self.num_stopped = 0

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # the objectives are this scheduler's own

    # ------------------------------------------------------------------ the rule
    def vector(self, result: dict[str, Any], accuracy: float | None = None) -> tuple[float, ...] | None:
        """The rung vector of a report (accuracy overridden by `accuracy`), or None if a value is missing."""
        out = []
        for i, key in enumerate(self.metrics):
            value = accuracy if i == 0 and accuracy is not None else result.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return None
            out.append(float(value))
        return tuple(out)

    def rung_of(self, iteration: float) -> int | None:
        """The highest rung epoch at or below `iteration`, or None."""
        below = [e for e in self.rungs if e <= iteration]
        return max(below) if below else None

    def on_result(self, key: Any, iteration: float, result: dict[str, Any]) -> str:
        """The decision for one report of the trial `key` (its number): CONTINUE or STOP."""
        epoch = self.rung_of(iteration)
        if epoch is None or key in self.rungs[epoch]:
            return TrialScheduler.CONTINUE
        vector = self.vector(result)
        if vector is None:
            logger.warning("MO-ASHA: trial %s reported no finite %s at epoch %s; not ranked", key,
                           "/".join(self.metrics), iteration)
            return TrialScheduler.CONTINUE
        recorded = self.rungs[epoch]
        decision = decide(list(recorded.values()), vector, self.modes, self.reduction_factor)
        recorded[key] = vector
        self.decisions.append((key, epoch, decision))
        logger.debug("MO-ASHA: trial %s at epoch %s %s", key, epoch, decision.text())
        if decision.promote:
            return TrialScheduler.CONTINUE
        self.num_stopped += 1
        return TrialScheduler.STOP

    # ------------------------------------------------------------------ Ray Tune hooks
    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        if result.get("status") != "running" or self.time_attr not in result:
            return TrialScheduler.CONTINUE  # a final report (ok, infeasible, failed): the trial ends by itself
        return self.on_result(result.get("trial", trial.trial_id), result[self.time_attr], result)

    def seed_rows(self, rows: Iterable[dict[str, Any]]) -> int:
        """Record at their rungs the trained search trials of a run's log (resume); returns how many."""
        count = 0
        for row in rows:
            curve = row.get(CURVE_KEY)
            reported = row.get("status") in (TrialStatus.OK, TrialStatus.TRUNCATED)
            if is_confirm(row) or not reported or not isinstance(curve, list):
                continue
            used = False
            for epoch, recorded in self.rungs.items():
                if epoch <= len(curve):
                    vector = self.vector(row, accuracy=curve[epoch - 1])
                    if vector is not None:
                        recorded.setdefault(row.get("trial"), vector)
                        used = True
            count += used
        return count

    def debug_string(self) -> str:
        rungs = " | ".join(f"epoch {e}: {len(r)} recorded" for e, r in self.rungs.items())
        return f"Using MO-ASHA on {', '.join(self.metrics)}: {self.num_stopped} stopped; {rungs}"

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.__dict__, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))
