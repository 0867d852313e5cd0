"""The confirm phase: after the search, the Pareto set is re-trained with extra seeds.

A search ranks architectures by one training run each; a front member may lead only by luck.
Each front member is trained again with training seeds `seed + S .. seed + S + N - 1` (S the
seeds each search trial trained, `search.trial_seeds`; same architecture, same budget, the same
synthetic data set), one run each, as Ray Tune trials through the
search's own trainable, logged in `trials.jsonl` with `phase: confirm` and `confirms: <trial>`.
The Optuna study is not told: these are measurements of known points, not samples.

`--confirm N` asks for N extra seeds; `auto` (the default) takes 2, else 1, as long as that is
estimated to cost at most `AUTO_SHARE` of the search (from the trials' own wall times); when even
one seed for the whole front would cost more, it gives one seed to the most accurate members that
fit in that share (at least 2, so that their leads can be judged), and otherwise none (the summary
says how to ask for it). The plan is saved in `run.json` the first
time, so a resumed run confirms the same members. `lknas.search.noise` turns the re-trainings
into accuracy mean +- std per front member and flags leads within noise.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from lknas.search.noise import CONFIRM_PHASE, search_rows
from lknas.search.store import PARAM_PREFIX, RunStore
from lknas.search.trial import CONFIRMS_KEY, NUMBER_KEY, SEED_KEY
from lknas.space.configs import Objective

__all__ = ["AUTO_SHARE", "ConfirmPlan", "plan_confirm", "confirm_jobs", "run_confirm"]

AUTO_SHARE = 0.30  # `auto` confirms only when the estimate is at most this share of the search


@dataclass
class ConfirmPlan:
    """Which front members get which extra seeds, and why."""

    seeds: int
    setting: int | str = "auto"
    members: list[int] = field(default_factory=list)
    train_seeds: list[int] = field(default_factory=list)
    estimated_share: float | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _wall(rows: pd.DataFrame) -> float:
    col = "wall_time" if "wall_time" in rows.columns else None
    if col is None:
        return 0.0
    return float(pd.to_numeric(rows[col], errors="coerce").fillna(0).sum())


def _most_accurate_affordable(front: pd.DataFrame, total: float, trial_seeds: int = 1) -> tuple[list[int], float]:
    """The front members, most accurate first, whose one extra seed each fits in AUTO_SHARE of
    the search's `total` wall time (a member that does not fit is passed over for the next), and
    the wall time they cost (a trial's wall time over the `trial_seeds` runs it trained)."""
    walls = pd.to_numeric(front.get("wall_time", pd.Series(0.0, index=front.index)), errors="coerce").fillna(0)
    walls = walls / trial_seeds
    chosen, spent = [], 0.0
    for i in front.sort_values("accuracy", ascending=False, kind="stable").index:
        if spent + float(walls[i]) <= AUTO_SHARE * total:
            chosen.append(int(front.at[i, "trial"]))
            spent += float(walls[i])
    return chosen, spent


def plan_confirm(store: RunStore, objectives: tuple[Objective, ...], setting: int | str,
                 base_seed: int = 0, trial_seeds: int = 1) -> ConfirmPlan:
    """The plan for `setting` (a count, or 'auto') from the run's finished search trials, each of
    which trained `trial_seeds` runs (seeds `base_seed` onwards): an extra seed is one run, and
    the seeds go on after theirs."""
    if not any(o.name == "accuracy" for o in objectives):
        return ConfirmPlan(0, setting, reason="accuracy is not an objective: nothing to confirm")
    df = store.frame()
    front = store.pareto(objectives, df)
    if front.empty:
        return ConfirmPlan(0, setting, reason="the Pareto set is empty")
    members = [int(t) for t in front["trial"]]
    total, per_seed = _wall(search_rows(df)), _wall(front) / trial_seeds
    share_of = (lambda n: n * per_seed / total) if total > 0 else (lambda n: float("inf"))
    if setting == "auto":
        n = next((k for k in (2, 1) if share_of(k) <= AUTO_SHARE), 0)
        if n == 0:
            part, spent = _most_accurate_affordable(front, total, trial_seeds) if total > 0 else ([], 0.0)
            if len(part) < 2:
                return ConfirmPlan(0, setting, members, [], share_of(1), f"skipped: even one extra seed would cost "
                                   f"{share_of(1):.0%} of the search (auto confirms up to {AUTO_SHARE:.0%}); "
                                   f"ask for it with --confirm 1")
            share = spent / total
            return ConfirmPlan(1, setting, part, [base_seed + trial_seeds], share, (
                f"auto: 1 extra seed for the {len(part)} most accurate of the {len(members)} front members, "
                f"estimated {share:.0%} of the search (all {len(members)} would cost {share_of(1):.0%}; auto "
                f"confirms up to {AUTO_SHARE:.0%}; --confirm 1 confirms all)"))
        reason = f"auto: {n} extra seed(s), estimated {share_of(n):.0%} of the search"
    else:
        n = int(setting)
        if n <= 0:
            return ConfirmPlan(0, setting, members, [], None, "off (--confirm 0)")
        reason = f"--confirm {n}: estimated {share_of(n):.0%} of the search"
    seeds = [base_seed + trial_seeds - 1 + i for i in range(1, n + 1)]
    return ConfirmPlan(n, setting, members, seeds, share_of(n), reason)


def confirm_jobs(store: RunStore, plan: ConfirmPlan) -> list[dict[str, Any]]:
    """The flat trial configs still to run (a member x seed already logged is skipped); each gets
    a trial number above every number in the log."""
    df = store.frame()
    if not plan.seeds or df.empty:
        return []
    done = set()
    if "confirms" in df.columns:
        for _, r in df[df.get("phase", pd.Series(dtype=object)).fillna("") == CONFIRM_PHASE].iterrows():
            done.add((int(r["confirms"]), int(r["seed"])))
    rows = {int(r["trial"]): r for _, r in df.iterrows()}
    number = int(pd.to_numeric(df["trial"], errors="coerce").max()) + 1
    jobs = []
    for member in plan.members:
        row = rows.get(member)
        if row is None:
            continue
        params = {k[len(PARAM_PREFIX):]: v for k, v in row.items()
                  if k.startswith(PARAM_PREFIX) and not (isinstance(v, float) and v != v)}
        for seed in plan.train_seeds:
            if (member, seed) in done:
                continue
            jobs.append({**params, NUMBER_KEY: number, CONFIRMS_KEY: member, SEED_KEY: seed})
            number += 1
    return jobs


def run_confirm(store: RunStore, jobs: list[dict[str, Any]], ctx, objectives: tuple[Objective, ...],
                cpus_per_trial: float, gpus_per_trial: float, max_concurrent: int | None, *,
                quiet: bool, stream, summary) -> None:
    """Run the confirm trials on Ray Tune (the search's trainable), logging them as they finish."""
    from ray import tune

    from lknas.search.cluster import trial_slots
    from lknas.search.monitor import SearchMonitor

    if not jobs:
        return
    print(f"lknas search: confirming the Pareto set, {len(jobs)} re-training(s) with other seeds", file=stream,
          flush=True)
    monitor = SearchMonitor(store, objectives, len(jobs), 0, quiet=quiet, stream=stream, summary=summary,
                            phase=CONFIRM_PHASE)
    concurrency = max_concurrent or trial_slots(cpus_per_trial, gpus_per_trial)
    by_number = {int(j[NUMBER_KEY]): j for j in jobs}
    trainable = tune.with_resources(tune.with_parameters(_run_job, jobs=by_number, ctx=ctx),
                                    {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        param_space={NUMBER_KEY: tune.grid_search(sorted(by_number))},
        tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=concurrency, reuse_actors=True,
                                    trial_dirname_creator=lambda t: f"confirm-{t.config.get(NUMBER_KEY)}-{t.trial_id}"),
        run_config=tune.RunConfig(name=f"{store.root.name}-confirm-{int(time.time())}",
                                  storage_path=str((store.root / "ray").resolve()), callbacks=[monitor], verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )
    try:
        tuner.fit()
    finally:
        monitor.close()


def _run_job(config: dict[str, Any], jobs: dict[int, dict[str, Any]], ctx) -> None:
    from lknas.search.trial import run_trial

    run_trial(dict(jobs[int(config[NUMBER_KEY])]), ctx)
