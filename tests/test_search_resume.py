"""What a resume reconciles, without Ray: study.db with trials.jsonl (rebuilt when missing, corrupt,
behind or foreign; trial numbers never reused), RUNNING trials told from the log, and the flags
given at resume saved to run.json or refused."""
from __future__ import annotations

import json
import shutil

import optuna
import pytest
from optuna.trial import TrialState

from lknas.errors import LknasError
from lknas.search.resume import open_study, resume_settings
from lknas.search.store import RunStore
from lknas.search.trial import DefineByRun, TrialContext
from lknas.space import load_space
from tests.fake_search import OBJECTIVES, STUDY, fake_row, fake_search, sample
from tests.test_search import write_space


def _study(run) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{run / 'study.db'}")


def _ctx(run) -> TrialContext:
    return TrialContext(space_file=str(run / "space.yaml"))


def _seen(trial: optuna.trial.FrozenTrial) -> dict:
    """What a sampler reads of a finished trial."""
    return {"number": trial.number, "state": trial.state, "values": trial.values, "params": trial.params,
            "distributions": trial.distributions, "hash": trial.user_attrs.get("hash"),
            "summary": trial.user_attrs.get("summary"), "constraints": {
                k: v for k, v in trial.system_attrs.items() if k.startswith("constraints")}}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 5-trial run of a constrained space: some trials feasible, some not."""
    root = tmp_path_factory.mktemp("finished")
    space = write_space(root / "s.yaml", constraints="{max_params: 4000, resolution: 32}")
    fake_search(root / "run", space, 5)
    statuses = {r["status"] for r in RunStore(root / "run").rows()}
    assert statuses == {"ok", "infeasible"}, statuses
    return root / "run"


@pytest.fixture
def run(finished_run, tmp_path):
    """A copy of the finished run, for one test to damage."""
    return shutil.copytree(finished_run, tmp_path / "run", ignore=shutil.ignore_patterns(".lock"))


def test_a_missing_study_is_rebuilt_with_what_the_sampler_learned(run):
    before = [_seen(t) for t in _study(run).trials]
    (run / "study.db").unlink()
    _, notes = open_study(RunStore(run), STUDY, _ctx(run), OBJECTIVES)
    assert notes and notes[0].startswith("study.db is missing: rebuilt it from trials.jsonl (5 finished trials")
    assert [_seen(t) for t in _study(run).trials] == before
    assert any(b["constraints"] for b in before)


def _behind(run, tmp_path):
    shutil.copyfile(run / "study.db", tmp_path / "old.db")
    fake_search(run, run / "space.yaml", 7)
    shutil.copyfile(tmp_path / "old.db", run / "study.db")


def _foreign(run, tmp_path):
    """Another run's study: other architectures under the same trial numbers."""
    text = (run / "space.yaml").read_text().replace("{choice: [3, 7, 9]}", "{choice: [5, 11]}")
    (tmp_path / "other.yaml").write_text(text)
    fake_search(tmp_path / "other", tmp_path / "other.yaml", 6)
    shutil.copyfile(tmp_path / "other" / "study.db", run / "study.db")


DAMAGE = {
    "missing": lambda run, tmp: (run / "study.db").unlink(),
    "garbage": lambda run, tmp: ((run / "study.db").write_bytes(b"not a database " * 100),
                                 (run / "study.db-journal").write_bytes(b"stale journal")),
    "empty": lambda run, tmp: (run / "study.db").write_bytes(b""),
    "behind": _behind,
    "foreign": _foreign,
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_study_that_does_not_match_the_log_is_rebuilt_and_numbers_are_never_reused(run, tmp_path, damage):
    DAMAGE[damage](run, tmp_path)
    store = RunStore(run)
    rows = store.rows()
    storage, notes = open_study(store, STUDY, _ctx(run), OBJECTIVES)
    assert len(notes) == 1 and "rebuilt it from trials.jsonl" in notes[0]
    study = optuna.load_study(study_name=STUDY, storage=storage)
    for row in rows:  # log trial n is Optuna trial n, finished as the log says
        assert study.trials[row["trial"]].user_attrs["hash"] == row["hash"]
        assert study.trials[row["trial"]].state == TrialState.COMPLETE
    assert study.ask().number > max(r["trial"] for r in rows)
    kept = sorted(p.name for p in run.glob("study.db.broken-*"))
    assert len(kept) == (0 if damage == "missing" else 1)
    assert not (run / "study.db-journal").exists()  # a stale journal never meets the new file


def test_a_log_with_gaps_and_duplicate_numbers_keeps_every_number_free(run):
    store = RunStore(run)
    rows = store.rows()
    lines = [json.dumps(r) for r in rows if r["trial"] != 2]  # trial 2 never finished
    lines.append(json.dumps(rows[0]))  # a number written twice by an older version
    store.trials_jsonl.write_text("\n".join(lines) + "\n")
    (run / "study.db").unlink()
    storage, _ = open_study(store, STUDY, _ctx(run), OBJECTIVES)
    study = optuna.load_study(study_name=STUDY, storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2 + [TrialState.FAIL] + [TrialState.COMPLETE] * 3
    assert study.trials[5].user_attrs["hash"] == rows[0]["hash"]  # the duplicate, after the others
    assert study.ask().number == 6


def test_running_trials_are_told_their_outcome_from_the_log(run):
    store = RunStore(run)
    ctx = _ctx(run)
    study = _study(run)
    define = DefineByRun(ctx)
    logged, lost = study.ask(), study.ask()  # both RUNNING when the driver was killed
    row = fake_row(sample(define, logged), ctx)
    sample(define, lost)
    store.append(row)  # the log heard of the first before Optuna did
    storage, notes = open_study(store, STUDY, ctx, OBJECTIVES)
    assert notes == []
    trials = optuna.load_study(study_name=STUDY, storage=storage).trials
    assert trials[logged.number].state == TrialState.COMPLETE
    assert trials[logged.number].values == [row["accuracy"], row["latency_ms"]]
    assert trials[lost.number].state == TrialState.FAIL


def test_a_trial_optuna_was_told_of_but_the_log_missed_is_run_again_under_a_new_number(run):
    """Ray tells the searcher before the callback appends the record: a kill between the two."""
    store = RunStore(run)
    ctx = _ctx(run)
    study = _study(run)
    told = study.ask()
    row = fake_row(sample(DefineByRun(ctx), told), ctx)
    study.tell(told.number, [row["accuracy"], row["latency_ms"]])  # ... and killed before store.append
    storage, notes = open_study(store, STUDY, ctx, OBJECTIVES)
    assert len(notes) == 1 and f"is ahead of the log (trial {told.number} finished in the study" in notes[0]
    rebuilt = optuna.load_study(study_name=STUDY, storage=storage)
    assert rebuilt.trials[told.number].state == TrialState.FAIL  # the sampler forgets what the log lacks
    assert all(rebuilt.trials[r["trial"]].state == TrialState.COMPLETE for r in store.rows())
    assert rebuilt.ask().number == told.number + 1  # and its number is not given out again


def test_flags_given_at_resume_are_saved_for_the_next_resume(run):
    store = RunStore(run)
    space = load_space(run / "space.yaml")
    settings, notes = resume_settings(store, space, {"trials": 9, "max_concurrent": 2, "sampler": "random",
                                                     "epochs": None})
    assert notes == ["--trials 9 (was 5)", "--max-concurrent 2 (was None)"]
    saved = json.loads(store.settings_file.read_text())
    assert saved["search"]["trials"] == 9 and saved["search"]["max_concurrent"] == 2
    assert settings["search"] == saved["search"]
    settings, notes = resume_settings(store, space, {})
    assert settings["search"]["trials"] == 9 and notes == []


def test_flags_that_would_change_the_search_are_refused_at_resume(run):
    store = RunStore(run)
    before = store.settings_file.read_text()
    with pytest.raises(LknasError) as err:
        resume_settings(store, load_space(run / "space.yaml"),
                        {"trials": 9, "sampler": "tpe", "steps": 5, "dataset": "shapes", "from_": "x.yaml"})
    message = str(err.value)
    for part in ("--sampler tpe (this run: random)", "--steps 5 (this run: 2)", "--data shapes (this run: pathfinder",
                 "--from x.yaml"):
        assert part in message
    assert store.settings_file.read_text() == before  # nothing applied, not even --trials
