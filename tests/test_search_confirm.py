"""The confirm phase: the Pareto set re-trained with extra seeds; noise shown and judged."""
from __future__ import annotations

import io
import json
import math

import pandas as pd
import pytest

from lknas.search.confirm import AUTO_SHARE, confirm_jobs, plan_confirm
from lknas.search.noise import noise_columns
from lknas.search.store import RunStore
from lknas.search.trial import CONFIRMS_KEY, NUMBER_KEY, SEED_KEY
from lknas.space.configs import Objective
from tests.helpers import small_arch

OBJ = (Objective("accuracy", "max"), Objective("latency", "min"))


def _row(trial, acc, lat, wall=10.0, **extra):
    return {"trial": trial, "status": "ok", "hash": f"h{trial}", "summary": f"arch {trial}", "accuracy": acc,
            "latency_ms": lat, "wall_time": wall, "param.width": 8 + trial, "seed": 0, **extra}


def _store(tmp_path, rows) -> RunStore:
    store = RunStore(tmp_path / "run")
    for r in rows:
        store.append(r)
    return store


def test_noise_columns_mean_std_and_verdict():
    front = pd.DataFrame([_row(0, 80.0, 1.0), _row(1, 81.0, 2.0), _row(2, 95.0, 3.0)])
    confirm = pd.DataFrame([
        _row(3, 79.0, 1.0, phase="confirm", confirms=0), _row(4, 81.0, 1.0, phase="confirm", confirms=0),
        _row(5, 78.0, 2.0, phase="confirm", confirms=1), _row(6, 82.0, 2.0, phase="confirm", confirms=1),
        _row(7, 94.0, 3.0, phase="confirm", confirms=2), _row(8, 96.0, 3.0, phase="confirm", confirms=2),
    ])
    out = noise_columns(front, pd.concat([front, confirm]), OBJ).set_index("trial")
    assert out.loc[0, "accuracy_mean"] == pytest.approx(80.0) and out.loc[0, "accuracy_std"] == pytest.approx(1.0)
    assert list(out["seeds"]) == [3, 3, 3]
    assert list(out["within_noise"]) == [False, True, False]  # 0: nothing cheaper; 2: 95 vs 80, a real lead
    assert "trial 0" in out.loc[1, "noise_note"]  # 80.3 vs 80: within the noise


def test_noise_columns_without_repeats_say_nothing():
    front = pd.DataFrame([_row(0, 80.0, 1.0), _row(1, 81.0, 2.0)])
    out = noise_columns(front, front, OBJ)
    assert list(out["seeds"]) == [1, 1] and out["accuracy_std"].isna().all()
    assert list(out["within_noise"]) == [None, None]


def test_auto_plan_confirms_only_when_cheap(tmp_path):
    # 10 trials of 10 s; the front (trials 0 and 9) costs 20 s a seed: 2 seeds = 40% > 30%, 1 seed = 20%
    rows = [_row(t, 50.0 + t, 1.0 + t) for t in range(10)]
    store = _store(tmp_path, rows)
    plan = plan_confirm(store, OBJ, "auto", base_seed=0)
    front = store.pareto(OBJ)
    assert len(front) == 10  # accuracy and latency both rise with t: every trial is on the front
    # one seed for all 10 members would be 100% of the search: the 3 most accurate fit in 30%
    assert plan.seeds == 1 and plan.members == [9, 8, 7] and plan.train_seeds == [1]
    assert plan.estimated_share == pytest.approx(0.3) and "3 most accurate of the 10" in plan.reason
    assert "--confirm 1 confirms all" in plan.reason


def test_auto_plan_skips_when_fewer_than_two_members_fit(tmp_path):
    # three front members of 40 s each in a 190 s search: one fits in 30% (57 s), and one alone judges nothing
    rows = [_row(t, 50.0, 6.0) for t in range(7)] + [_row(7 + i, 60.0 + 10 * i, 3.0 + i, wall=40.0) for i in range(3)]
    plan = plan_confirm(_store(tmp_path, rows), OBJ, "auto")
    assert plan.seeds == 0 and plan.train_seeds == [] and "ask for it with --confirm 1" in plan.reason


def test_auto_plan_passes_over_a_member_that_does_not_fit(tmp_path):
    # the most accurate member is too slow to re-train within 30%; the next two are confirmed instead
    rows = [_row(t, 50.0, 6.0) for t in range(5)] + [_row(5, 90.0, 5.0, wall=60.0), _row(6, 80.0, 4.0, wall=10.0),
                                                      _row(7, 70.0, 3.0, wall=10.0)]
    plan = plan_confirm(_store(tmp_path, rows), OBJ, "auto")  # total 130 s; 30% = 39 s
    assert plan.members == [6, 7] and plan.seeds == 1


def test_auto_plan_picks_two_then_one(tmp_path):
    rows = [_row(t, 50.0, 5.0) for t in range(8)] + [_row(8, 90.0, 1.0, wall=10.0)]  # one dominant member
    store = _store(tmp_path, rows)
    plan = plan_confirm(store, OBJ, "auto")
    assert plan.members == [8] and plan.seeds == 2 and plan.train_seeds == [1, 2]  # 2 x 10 / 90 = 22%
    assert plan.estimated_share <= AUTO_SHARE
    rows[8]["wall_time"] = 20.0
    plan = plan_confirm(_store(tmp_path / "b", rows), OBJ, "auto")
    assert plan.seeds == 1  # 2 x 20 / 100 = 40% > 30%; 1 x 20 / 100 = 20%
    assert plan_confirm(_store(tmp_path / "c", rows), OBJ, 3).seeds == 3  # asked for: done whatever it costs
    assert plan_confirm(_store(tmp_path / "d", rows), OBJ, 0).seeds == 0
    assert plan_confirm(_store(tmp_path / "e", rows), (Objective("flops", "min"),), "auto").seeds == 0


def test_confirm_jobs_number_above_the_log_and_skip_what_is_done(tmp_path):
    rows = [_row(t, 50.0, 5.0) for t in range(3)] + [_row(3, 90.0, 1.0)]
    store = _store(tmp_path, rows)
    plan = plan_confirm(store, OBJ, 2)
    jobs = confirm_jobs(store, plan)
    assert [(j[CONFIRMS_KEY], j[SEED_KEY], j[NUMBER_KEY]) for j in jobs] == [(3, 1, 4), (3, 2, 5)]
    assert jobs[0]["width"] == 11  # the member's sampled dimensions, without the param. prefix
    store.append(_row(4, 88.0, 1.0, phase="confirm", confirms=3, seed=1))
    jobs = confirm_jobs(store, plan)
    assert [(j[CONFIRMS_KEY], j[SEED_KEY], j[NUMBER_KEY]) for j in jobs] == [(3, 2, 5)]
    # a confirm trial is never a front point of its own
    assert list(store.pareto(OBJ)["trial"]) == [3]


@pytest.mark.xdist_group("ray")
@pytest.mark.ray
def test_search_confirms_its_front_with_other_seeds(local_ray, tmp_path):
    from test_search import study_of, write_space

    from lknas.search import load_results, run_search

    out = tmp_path / "run"
    outcome = run_search(write_space(tmp_path / "s.yaml", trials=3, confirm="1"), out=out, quiet=True)
    df = load_results(out)
    search = df[df["phase"].fillna("") != "confirm"]
    confirm = df[df["phase"] == "confirm"]
    assert len(search) == 3 and len(confirm) == len(outcome.pareto) >= 1
    assert set(confirm["confirms"].astype(int)) == set(outcome.pareto["trial"])
    assert set(confirm["seed"].astype(int)) == {1} and set(search["seed"].astype(int)) == {0}
    assert min(confirm["trial"]) > max(search["trial"])
    assert (outcome.pareto["seeds"] == 2).all() and outcome.pareto["accuracy_std"].notna().all()
    pareto_csv = pd.read_csv(out / "pareto.csv")
    assert {"accuracy_mean", "accuracy_std", "seeds", "within_noise"} <= set(pareto_csv.columns)
    assert "confirm: --confirm 1" in (out / "summary.txt").read_text()
    assert len(study_of(out).trials) == 3  # Optuna saw only the search's samples
    plan = json.loads((out / "run.json").read_text())["confirm_plan"]
    assert plan["seeds"] == 1 and sorted(plan["members"]) == sorted(outcome.pareto["trial"])
    # resuming a finished run neither re-runs the search nor the confirm trials
    again = run_search(resume=out, quiet=True)
    assert len(load_results(out)) == len(df) and not again.interrupted
    assert all(math.isfinite(v) for v in again.pareto["accuracy_mean"])


def test_noise_columns_count_a_trials_own_seeds():
    # search.trial_seeds 2: each trial's accuracy is the mean of its runs, which count as its seeds
    front = pd.DataFrame([_row(0, 80.0, 1.0, accuracy_seeds=[79.0, 81.0]),
                          _row(1, 81.5, 2.0, accuracy_seeds=[79.0, 84.0])])
    confirm = pd.DataFrame([_row(2, 82.0, 1.0, phase="confirm", confirms=0)])
    out = noise_columns(front, pd.concat([front, confirm]), OBJ).set_index("trial")
    assert out.loc[0, "seeds"] == 3 and out.loc[0, "accuracy_mean"] == pytest.approx(80.667, abs=1e-3)
    assert out.loc[1, "seeds"] == 2 and out.loc[1, "accuracy_std"] == pytest.approx(3.5355, abs=1e-3)
    assert out.loc[1, "within_noise"] and "trial 0" in out.loc[1, "noise_note"]  # 81.5 +- 3.5 vs 80.7 +- 1.5


def test_plan_confirm_after_trial_seeds_costs_one_run_and_takes_new_seeds(tmp_path):
    # the same 10 trials of 10 s as above, each now 2 runs of 5 s: one extra seed per front member
    # costs half a trial, and the seeds 0 and 1 are taken
    rows = [_row(t, 50.0 + t, 1.0 + t, accuracy_seeds=[49.0 + t, 51.0 + t]) for t in range(10)]
    store = _store(tmp_path, rows)
    plan = plan_confirm(store, OBJ, "auto", base_seed=0, trial_seeds=2)
    assert plan.members == [9, 8, 7, 6, 5, 4] and plan.train_seeds == [2]  # 6 x 5 s = 30 of 100 s
    assert plan_confirm(store, OBJ, 2, base_seed=3, trial_seeds=2).train_seeds == [5, 6]
    assert plan_confirm(store, OBJ, 2, base_seed=3).train_seeds == [4, 5]  # one run per trial: as before


@pytest.mark.xdist_group("ray")
@pytest.mark.ray
def test_search_trains_every_trial_with_its_seeds_and_ranks_their_mean(local_ray, tmp_path):
    from test_search import write_space

    from lknas.search import load_results, run_search

    out = tmp_path / "run"
    printed = io.StringIO()
    outcome = run_search(write_space(tmp_path / "s.yaml", trials=2, confirm="1", steps=3), out=out, quiet=True,
                         trial_seeds=2, stream=printed)
    assert "2 trials to run (2 training seeds each, ranked by their mean)" in printed.getvalue()
    df = load_results(out)
    search = df[df["phase"].fillna("") != "confirm"]
    confirm = df[df["phase"] == "confirm"]
    assert len(search) == 2
    for _, row in search.iterrows():
        assert list(row["train_seeds"]) == [0, 1] and len(row["accuracy_seeds"]) == 2
        assert row["accuracy"] == pytest.approx(sum(row["accuracy_seeds"]) / 2)
        assert len(row["accuracy_curve"]) == row["epoch"]
    assert set(confirm["seed"].astype(int)) == {2} and confirm["accuracy_seeds"].isna().all()
    assert (outcome.pareto["seeds"] == 3).all()
    assert json.loads((out / "run.json").read_text())["search"]["trial_seeds"] == 2
    assert "(3 seeds)" in (out / "summary.txt").read_text()


def test_a_trial_trains_its_seeds_on_one_data_set_and_reports_their_mean(monkeypatch):
    import lknas.data
    import lknas.measure.trial
    from lknas.search import trial as trial_mod
    from lknas.space.configs import TrainConfig

    built, trained, reports = [], [], []

    class Bundle:
        train = [0] * 2  # two batches an epoch

    def fake_build(dataset, **kw):
        built.append((kw["seed"], kw["order_seed"]))
        return Bundle()

    def fake_measure(arch, cfg, bundle, report=None, **kw):
        trained.append((cfg.seed, kw["erf"]))
        for epoch, acc in enumerate([60.0 + cfg.seed, 70.0 + 2 * cfg.seed], start=1):
            report({"epoch": epoch, "accuracy": acc, "val_loss": 1.0, "train_loss": 1.0})
        return {"status": "ok", "accuracy": 70.0 + 2 * cfg.seed, "val_loss": 0.5 + cfg.seed, "train_loss": 0.4,
                "epochs": 2, "train_time": 3.0, "measure_time": 1.0, "params": 10, "flops": 20}

    monkeypatch.setattr(lknas.data, "build_data", fake_build)
    monkeypatch.setattr(lknas.measure.trial, "measure_trial", fake_measure)
    monkeypatch.setattr(trial_mod, "report", reports.append)
    cfg = TrainConfig(dataset="shapes", steps=4, seed=5)
    ctx = trial_mod.TrialContext(space_file="", trial_seeds=3)
    trial_mod._train_and_report(None, cfg, ctx, {"train": {}}, seeds=3)
    assert [s for s, _ in trained] == [5, 6, 7] and [e for _, e in trained] == [False, False, True]  # ERF once
    assert built == [(5, 5), (5, 6), (5, 7)]  # one data set (seed 5), three orders
    *epochs, final = reports
    assert [r["epoch"] for r in epochs] == [1]  # the last run's epochs, the last one only in the final row
    assert epochs[0]["accuracy"] == pytest.approx(66.0)  # epoch 1 of the three runs: 65, 66, 67
    assert final["accuracy_seeds"] == [80.0, 82.0, 84.0] and final["accuracy"] == pytest.approx(82.0)
    assert final["train_seeds"] == [5, 6, 7] and final["val_loss"] == pytest.approx(6.5)
    assert final["train_time"] == pytest.approx(9.0) and final["accuracy_curve"] == pytest.approx([66.0, 82.0])
    built.clear()
    trial_mod._train_and_report(None, cfg.replace(order_seed=9), ctx, {"train": {}}, seeds=3)
    assert built == [(5, 9), (5, 9), (5, 9)]  # train.order_seed: one order for every run


def test_a_trial_whose_run_fails_stops_there_with_that_status(monkeypatch):
    import lknas.data
    import lknas.measure.trial
    from lknas.search import trial as trial_mod
    from lknas.space.configs import TrainConfig

    class Bundle:
        train = [0]

    reports, trained = [], []
    monkeypatch.setattr(lknas.data, "build_data", lambda dataset, **kw: Bundle())

    def fake_measure(arch, cfg, bundle, report=None, **kw):
        trained.append(cfg.seed)
        status = "ok" if cfg.seed == 0 else "diverged"
        return {"status": status, "accuracy": 75.0 if status == "ok" else 50.0, "epochs": 1}

    monkeypatch.setattr(lknas.measure.trial, "measure_trial", fake_measure)
    monkeypatch.setattr(trial_mod, "report", reports.append)
    trial_mod._train_and_report(None, TrainConfig(dataset="shapes", steps=1), trial_mod.TrialContext(space_file=""),
                                {"train": {}}, seeds=3)
    assert trained == [0, 1] and reports[-1]["status"] == "diverged"
    assert reports[-1]["accuracy_seeds"] == [75.0, 50.0]


def test_an_architecture_trained_again_is_on_the_front_once_and_confirmed_once(tmp_path):
    """A sampler can propose an architecture again: its trials tie (same seed, same re-timed
    latency) and all sat on the front, so the confirm phase re-trained it with the same seed once
    per trial (measured: 3 of 4 re-trainings of a search were one architecture)."""
    rows = [_row(0, 80.0, 1.0), _row(1, 85.0, 2.0), _row(2, 70.0, 0.5)]
    rows += [{**_row(t, 85.0, 2.0), "hash": "h1"} for t in (3, 5)]  # architecture h1 again, twice
    rows.append({**_row(4, 80.0, 1.0), "hash": "h0"})
    rows.append({**_row(6, 60.0, 0.4), "hash": None})  # rows without a hash are never merged
    rows.append({**_row(7, 59.0, 0.3), "hash": None})
    rows = [{**r, "arch_yaml": small_arch().to_yaml()} for r in rows]
    store = _store(tmp_path, rows)
    front = store.pareto(OBJ)
    assert sorted(front["trial"]) == [0, 1, 2, 6, 7]  # the earliest trial of each architecture
    assert list(front["accuracy"]) == sorted(front["accuracy"], reverse=True)  # still best first
    plan = plan_confirm(store, OBJ, 1, base_seed=0)
    jobs = confirm_jobs(store, plan)
    assert sorted(j[CONFIRMS_KEY] for j in jobs) == [0, 1, 2, 6, 7]  # one re-training per architecture
    store.refresh(OBJ)
    assert len(pd.read_csv(store.root / "pareto.csv")) == 5
    assert len(list((store.root / "archs").glob("*.yaml"))) == 5
