"""MO-ASHA's promotion rule on hand-made rung tables, its Ray Tune hooks, and its settings."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from ray.tune.schedulers import TrialScheduler

from lknas.errors import LknasError, SpaceError
from lknas.search.moasha import MOASHAScheduler, decide, nondominated_fronts, rung_epochs, rung_objectives, rung_order
from lknas.search.schedulers import BUILDERS, make_scheduler
from lknas.space import Objective, SearchConfig, parse_space
from lknas.space.configs import SCHEDULERS

ACC_LAT = ["max", "min"]  # (accuracy %, latency ms)
OBJECTIVES = (Objective("accuracy", "max"), Objective("latency", "min"))
STOP, CONTINUE = TrialScheduler.STOP, TrialScheduler.CONTINUE


def test_a_dominated_trial_stops_and_a_dominating_one_continues():
    recorded = [(80.0, 1.0), (70.0, 2.0)]
    stopped = decide(recorded, (60.0, 3.0), ACC_LAT, 2)
    assert not stopped.promote and (stopped.position, stopped.kept, stopped.recorded) == (2, 1, 3)
    assert stopped.text() == "stopped: ranked 3 of 3 at the rung, which keeps the top 1"
    assert decide(recorded, (90.0, 0.5), ACC_LAT, 2).promote


def test_a_fast_net_of_middling_accuracy_continues_where_accuracy_alone_would_stop_it():
    recorded = [(80.0, 1.0), (75.0, 1.5), (70.0, 2.0)]  # a chain: (80, 1.0) dominates the others
    fast = decide(recorded, (60.0, 0.5), ACC_LAT, 2)  # the worst accuracy, the lowest latency
    assert fast.promote and (fast.position, fast.kept) == (1, 2)
    assert not decide(recorded, (60.0, 0.5), ["max", "max"], 2).promote  # latency maximized: last


def test_fewer_recorded_trials_than_the_reduction_factor_always_continue():
    recorded = [(90.0, 1.0), (85.0, 0.5)]
    worst = (10.0, 100.0)
    assert decide(recorded, worst, ACC_LAT, 3).promote  # 2 recorded < 3
    assert decide([], worst, ACC_LAT, 3).promote
    assert not decide(recorded + [(88.0, 0.8)], worst, ACC_LAT, 3).promote  # 3 recorded: the top 1 of 4 continues
    assert not decide(recorded, worst, ACC_LAT, 2).promote  # 2 recorded, eta 2: the top 1 of 3


@pytest.mark.parametrize("modes, promote", [(["max", "min"], False), (["max", "max"], True),
                                            (["min", "min"], False), (["min", "max"], True)])
def test_modes_decide_which_way_is_better(modes, promote):
    """Equal first column; the newcomer has the largest second one: best when maximized, worst when minimized."""
    assert decide([(80.0, 1.0), (80.0, 2.0)], (80.0, 3.0), modes, 2).promote is promote


def test_ties_in_the_last_front_go_to_the_extremes_then_the_spread():
    front = [(90.0, 4.0), (80.0, 2.0), (70.0, 1.0)]  # no trial dominates another
    middle = decide(front, (85.0, 3.0), ACC_LAT, 2)  # on the front too; 4 trials keep 2
    assert not middle.promote and middle.kept == 2 and middle.position >= 2
    assert decide(front, (60.0, 0.5), ACC_LAT, 2).promote  # the new cheapest extreme: second after the most accurate
    assert decide(front, (95.0, 9.0), ACC_LAT, 2).promote  # the new most accurate: first
    # the order itself: most accurate first, then the farthest (the cheapest), then the rest
    assert rung_order([[-90.0, 4.0], [-80.0, 2.0], [-70.0, 1.0], [-85.0, 3.0]])[:2] == [0, 2]


def test_exact_ties_go_to_the_trial_recorded_first():
    assert not decide([(80.0, 1.0), (80.0, 1.0)], (80.0, 1.0), ACC_LAT, 2).promote
    assert rung_order([[1.0, 1.0]] * 3) == [0, 1, 2]


def test_fronts_by_hand():
    values = [[1.0, 4.0], [2.0, 2.0], [4.0, 1.0], [3.0, 3.0], [5.0, 5.0], [2.0, 2.0]]  # minimized
    assert nondominated_fronts(values) == [[0, 1, 2, 5], [3], [4]]


def test_rungs_and_rung_objectives():
    assert rung_epochs(1, 2, 10) == [1, 2, 4, 8]
    assert rung_epochs(1, 3, 27) == [1, 3, 9]
    assert rung_epochs(2, 1.5, 10) == [2, 3, 5, 7]  # ceil(2 * 1.5**k)
    assert rung_epochs(3, 2, 3) == []  # nothing below the full training
    objectives = (Objective("erf", "max"), Objective("latency", "min"), Objective("accuracy", "max"))
    assert [o.name for o in rung_objectives(objectives)] == ["accuracy", "latency"]  # erf: only after training


def _report(trial: int, epoch: int, accuracy: float, latency: float = 1.0, status: str = "running") -> dict:
    return {"trial": trial, "status": status, "training_iteration": epoch, "epoch": epoch, "accuracy": accuracy,
            "latency_ms": latency, "accuracy_curve": [accuracy] * epoch}


def test_the_scheduler_ranks_at_rung_epochs_with_costs_from_the_first_report():
    sched = MOASHAScheduler(OBJECTIVES, max_t=4, grace_period=1, reduction_factor=2)
    assert list(sched.rungs) == [1, 2]
    t = lambda i: SimpleNamespace(trial_id=f"id{i}")  # noqa: E731
    on = lambda i, *a, **k: sched.on_trial_result(None, t(i), _report(i, *a, **k))  # noqa: E731
    assert on(0, 1, 80.0, latency=1.0) == CONTINUE  # first at the rung
    assert on(1, 1, 70.0, latency=2.0) == CONTINUE  # 1 recorded < 2
    assert on(2, 1, 60.0, latency=3.0) == STOP  # dominated by both: top 1 of 3
    assert on(3, 1, 50.0, latency=0.5) == CONTINUE  # the cheapest: top 2 of 4
    assert on(0, 1, 10.0) == CONTINUE  # already ranked at this rung: no second decision
    assert on(0, 3, 10.0) == CONTINUE  # epoch 3 is not a rung; 2 is the highest below: ranked there first
    assert sched.rungs[2] == {0: (10.0, 1.0)}
    assert on(4, 1, 99.0, status="infeasible") == CONTINUE and 4 not in sched.rungs[1]  # not a training report
    assert on(5, 4, 99.0, status="ok") == CONTINUE  # the final report: the trial ends by itself
    assert [(k, e, d.promote) for k, e, d in sched.decisions] == [
        (0, 1, True), (1, 1, True), (2, 1, False), (3, 1, True), (0, 2, True)]
    assert sched.num_stopped == 1 and "1 stopped" in sched.debug_string()
    missing = _report(6, 1, 90.0)
    del missing["latency_ms"]
    assert sched.on_trial_result(None, t(6), missing) == CONTINUE and 6 not in sched.rungs[1]


def test_a_resumed_scheduler_is_refilled_from_the_log():
    rows = [
        {**_report(0, 4, 0.0, status="ok"), "accuracy_curve": [50.0, 60.0, 70.0, 80.0]},
        {**_report(1, 1, 0.0, status="truncated"), "accuracy_curve": [40.0]},
        {**_report(2, 1, 0.0, status="infeasible"), "accuracy_curve": None},
        {**_report(3, 4, 0.0, status="ok"), "phase": "confirm", "confirms": 0},
    ]
    sched = make_scheduler(SearchConfig(scheduler="moasha"), 4, rows)
    assert sched.rungs == {1: {0: (50.0, 1.0), 1: (40.0, 1.0)}, 2: {0: (60.0, 1.0)}}
    fresh = MOASHAScheduler(OBJECTIVES, max_t=4)
    assert fresh.seed_rows(rows) == 2


def test_every_scheduler_name_has_a_builder_and_moasha_needs_a_stoppable_budget():
    assert tuple(BUILDERS) == SCHEDULERS
    for name in SCHEDULERS:
        assert make_scheduler(SearchConfig(scheduler=name), 4) is not None
    with pytest.raises(LknasError, match=r"search.grace_period \(--grace-period\) is 4, but each trial trains 4"):
        make_scheduler(SearchConfig(scheduler="moasha", grace_period=4), 4)
    with pytest.raises(ValueError, match="add accuracy"):
        MOASHAScheduler((Objective("latency", "min"),), max_t=4)


def test_space_file_settings_are_checked_by_key():
    stages = [{"depth": 1, "width": 8, "kernel": 3}]
    sp = parse_space({"stages": stages, "search": {"scheduler": "moasha", "grace_period": 2, "reduction_factor": 3}})
    assert (sp.search.scheduler, sp.search.grace_period, sp.search.reduction_factor) == ("moasha", 2, 3)
    with pytest.raises(SpaceError) as err:
        parse_space({"stages": stages, "search": {"scheduler": "moasha", "objectives": ["latency", "params"],
                                                  "reduction_factor": 1, "grace_period": 0}}, "t.yaml")
    found = {p.path: p.message for p in err.value.problems}
    assert set(found) == {"search.scheduler", "search.reduction_factor", "search.grace_period"}
    assert "add accuracy to the objectives or use scheduler fifo" in found["search.scheduler"]
    with pytest.raises(SpaceError, match="did you mean 'moasha'"):
        parse_space({"stages": stages, "search": {"scheduler": "mosha"}}, "t.yaml")
