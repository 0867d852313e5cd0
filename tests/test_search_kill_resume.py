"""Kill the search at many random points and resume each time: no finished trial is lost, none is
recorded twice, and the study keeps numbering after the log.

The search here is `tests.fake_search` (the real run store, lock, reconciliation and Optuna study,
a fake trainable), started in a fresh process each time and ended by SIGKILL at a point drawn from
a seeded rng: after 0 to 3 more records plus a random fraction of a trial, so kills land while it
starts and reconciles, between ask and record, between Optuna's `tell` and the log's append (both
orders), and mid-way through writes. Between runs, some kills are
made worse the way a crash can: a torn last line (a kill mid-write, which SIGKILL at a random time
rarely hits), study.db lost, or study.db garbled. The Ray-based kill test is in test_search.py.
"""
from __future__ import annotations

import json
import multiprocessing
import random
import time
import warnings

import optuna
import pytest

from lknas.search.store import RunLogWarning, RunStore
from tests.fake_search import STUDY, fake_search, log_records
from tests.test_search import write_space

TRIALS = 150  # far more than KILLS kills consume (at 40 a fast machine finished after 9 kills, ~5 records each)
KILLS = 20


@pytest.fixture(scope="module")
def processes():
    """Fresh search processes forked from a server that has imported everything once (and runs no
    threads, so forking it is safe)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.fake_search"])
    return ctx


def _worsen(run, rng: random.Random) -> str:
    """What a crash can leave besides the kill itself, at random."""
    roll = rng.random()
    if roll < 0.3:
        line = json.dumps({"trial": 10_000, "status": "ok", "hash": "torn", "arch_yaml": "x" * 300})
        with open(run / "trials.jsonl", "a") as fh:
            fh.write(line[:rng.randrange(1, len(line) - 1)])  # never a whole record
        return "torn"
    if roll < 0.45 and (run / "study.db").exists():
        (run / "study.db").unlink()
        return "no study.db"
    if roll < 0.55 and (run / "study.db").exists():
        with open(run / "study.db", "r+b") as fh:
            fh.write(b"\0" * 100)  # the SQLite header gone
        return "garbled study.db"
    return ""


def _wait_for(run, records: int, proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while proc.is_alive() and time.monotonic() < deadline and len(log_records(run)) < records:
        time.sleep(0.01)


def test_kills_at_random_points_lose_and_duplicate_no_trial(processes, tmp_path):
    rng = random.Random(14)
    space = write_space(tmp_path / "s.yaml")
    run = tmp_path / "run"
    seen: set[tuple[int, str]] = set()
    events = []
    for _ in range(KILLS):
        proc = processes.Process(target=fake_search, args=(run, space, TRIALS))
        proc.start()
        _wait_for(run, len(seen) + rng.choice([0, 1, 1, 2, 3]), proc)
        time.sleep(rng.uniform(0.0, 0.4))
        proc.kill()
        proc.join()
        if proc.exitcode == 0:
            break  # finished before this kill
        records = log_records(run)
        numbers = [n for n, _ in records]
        assert set(records) >= seen, f"lost: {seen - set(records)}"
        assert len(numbers) == len(set(numbers)), f"duplicated: {sorted(numbers)}"
        seen = set(records)
        events.append((len(records), _worsen(run, rng)))
    assert len(events) >= 10, events  # enough kills landed before the end
    assert fake_search(run, space, TRIALS) is not None  # a last, uninterrupted resume

    with warnings.catch_warnings():
        warnings.simplefilter("error", RunLogWarning)  # no torn or foreign line left behind
        rows = RunStore(run).rows()
    numbers = [r["trial"] for r in rows]
    assert len(rows) == TRIALS and len(set(numbers)) == TRIALS
    assert {(r["trial"], r["hash"]) for r in rows} >= seen
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{run / 'study.db'}")
    for row in rows:  # the study and the log agree on every finished trial
        assert study.trials[row["trial"]].user_attrs["hash"] == row["hash"]
        assert study.trials[row["trial"]].state == optuna.trial.TrialState.COMPLETE
    assert optuna.trial.TrialState.RUNNING not in {t.state for t in study.trials}
    assert {e for _, e in events} >= {"", "torn", "no study.db"}, events
