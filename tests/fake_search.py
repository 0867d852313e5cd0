"""A search driver without Ray, for the run-log tests: the real pieces, a fake trainable.

`fake_search` does what `run_search` does around its trials, with the same objects: it holds the
run (`RunStore.hold`), repairs the log's tail, reconciles the study with the log (`open_study`),
asks Optuna through the real `DefineByRun`, then records each trial the way Ray Tune does
(searcher `tell`, then the monitor's `append`), with made-up metrics instead of training.
Odd trials are recorded in the other order (append, then tell), so a kill can land in either gap.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import optuna

from lknas.search.objectives import effective_counts, objective_values
from lknas.search.resume import open_study
from lknas.search.store import RunStore
from lknas.search.trial import COUNTS_KEY, INFEASIBLE_KEY, NUMBER_KEY, DefineByRun, TrialContext, trial_identity
from lknas.space import Objective

OBJECTIVES = (Objective("accuracy", "max"), Objective("latency", "min"))
STUDY = "tiny_space"


def settings(trials: int) -> dict[str, Any]:
    return {"search": {"sampler": "random", "objectives": [o.to_dict() for o in OBJECTIVES], "trials": trials,
                       "seed": 0},
            "train_overrides": {}, "space_name": STUDY}


def sample(define: DefineByRun, trial: optuna.trial.Trial) -> dict[str, Any]:
    """The config Ray's OptunaSearch hands the trainable: the sampled values and the function's keys."""
    returned = define(trial)
    return {**trial.params, **returned}


def fake_row(config: dict[str, Any], ctx: TrialContext) -> dict[str, Any]:
    """What run_trial would report for this sample, with metrics derived from its hash."""
    from lknas.search.trial import _space

    params = {k: v for k, v in config.items() if not k.startswith("lknas.")}
    arch = _space(ctx).suggest(optuna.trial.FixedTrial(params))
    row = trial_identity(arch, params, config[NUMBER_KEY])
    row.update(effective_counts(config.get(COUNTS_KEY) or {}))
    row.pop("resolution", None)
    score = int(row["hash"][:6], 16) / 0xFFFFFF
    infeasible = config.get(INFEASIBLE_KEY)
    row.update(status="infeasible" if infeasible else "ok", accuracy=50 + 50 * score, latency_ms=1 + score)
    if infeasible:
        row["reason"] = infeasible
    return row


def fake_search(root: str | Path, space_file: str | Path, trials: int) -> list[str]:
    """Run (or continue) a fake search of `trials` in `root`; returns open_study's notes."""
    store = RunStore(root)
    with store.hold("search"):
        if not store.settings_file.exists():
            shutil.copyfile(space_file, store.space_file)
            store.write_settings(settings(trials))
        store.repair_tail()
        done = store.rows()
        ctx = TrialContext(space_file=str(store.space_file.resolve()))
        storage, notes = open_study(store, STUDY, ctx, OBJECTIVES)
        study = optuna.create_study(storage=storage, study_name=STUDY, load_if_exists=True,
                                    directions=["maximize", "minimize"],
                                    sampler=optuna.samplers.RandomSampler(seed=len(done)))
        define = DefineByRun(ctx)
        for _ in range(trials - len(done)):
            trial = study.ask()
            row = fake_row(sample(define, trial), ctx)
            values = objective_values(row, OBJECTIVES)
            if trial.number % 2 == 0:  # Ray Tune's order: the searcher hears first, then the callbacks
                study.tell(trial, values)
                store.append(row)
            else:
                store.append(row)
                study.tell(trial, values)
        storage.remove_session()
        storage.engine.dispose()
    return notes


def log_records(root: str | Path) -> list[tuple[int, str]]:
    """(trial, hash) of every line of the log that parses, torn or not: what a check compares."""
    path = Path(root) / "trials.jsonl"
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        out.append((record["trial"], record["hash"]))
    return out
