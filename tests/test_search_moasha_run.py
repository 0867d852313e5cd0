"""A tiny moasha search on a local Ray, and its resume: what was stopped is what the rule says.

Trials run one at a time, so each reaches rung 1 in trial order; replaying the log's accuracy
curves and latencies through a fresh MOASHAScheduler in that order must give every recorded status.
The resume adds trials whose decisions count the trials run before it (the rungs refilled from
the log)."""
from __future__ import annotations

import optuna
import pytest
from ray.tune.schedulers import TrialScheduler

from lknas.search import load_results
from lknas.search.moasha import MOASHAScheduler
from lknas.space import Objective
from tests.test_search import study_of, write_space

pytestmark = [pytest.mark.xdist_group("ray"), pytest.mark.ray]
OBJECTIVES = (Objective("accuracy", "max"), Objective("params", "min"))  # both deterministic: no timing in the rule
ETA = 3


def _replayed(df) -> dict[int, str]:
    sched = MOASHAScheduler(OBJECTIVES, max_t=2, grace_period=1, reduction_factor=ETA)
    out = {}
    for row in df.sort_values("trial").to_dict("records"):
        out[row["trial"]] = "ok"
        for epoch, accuracy in enumerate(row["accuracy_curve"], start=1):
            if sched.on_result(row["trial"], epoch, {**row, "accuracy": accuracy}) == TrialScheduler.STOP:
                out[row["trial"]] = "truncated"
                break
    return out


def _check(out, trials: int) -> None:
    df = load_results(out)
    assert sorted(df["trial"]) == list(range(trials))
    assert dict(zip(df["trial"], df["status"])) == _replayed(df)
    stopped = df[df["status"] == "truncated"]
    assert (stopped["epoch"] == 1).all() and (stopped["accuracy_curve"].map(len) == 1).all()  # its last rung
    assert all("after epoch 1" in reason for reason in stopped.get("reason", []))
    assert (df.loc[df["status"] == "ok", "accuracy_curve"].map(len) == 2).all()
    states = {t.number: t for t in study_of(out).trials}
    for row in df.to_dict("records"):  # a partial accuracy never reaches Optuna as a final value
        trial = states[row["trial"]]
        if row["status"] == "truncated":
            assert trial.state == optuna.trial.TrialState.PRUNED and trial.values is None
        else:
            assert trial.state == optuna.trial.TrialState.COMPLETE
            assert trial.values == [row["accuracy"], row["params"]]
    return df


def test_a_moasha_search_and_its_resume(local_ray, tmp_path):
    from lknas.search import run_search

    out = tmp_path / "run"
    space = write_space(tmp_path / "s.yaml", steps=6, trials=4, objectives="[accuracy, params]")  # 3 batches an epoch: 2 epochs, rung 1
    run_search(space, out=out, quiet=True, scheduler="moasha", reduction_factor=ETA, max_concurrent=1)
    first = _check(out, 4)
    assert "scheduler moasha" in (out / "summary.txt").read_text()

    outcome = run_search(resume=out, quiet=True, trials=8)
    df = _check(out, 8)  # trials 4..7 ranked against all trials before them, those of the first run included
    keys = ["trial", "status", "accuracy", "params", "epoch"]
    assert not outcome.interrupted and df[df["trial"] < 4][keys].reset_index(drop=True).equals(first[keys])
    assert "truncated" in set(df["status"])
