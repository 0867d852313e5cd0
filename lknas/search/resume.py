"""What a resume reconciles before the search goes on: the flags with run.json, study.db with trials.jsonl.

Settings (`resume_settings`). A resume continues the same search. Flags that only say how much
more to run and where (`--trials`, `--max-concurrent`, `--cpus-per-trial`, `--gpus-per-trial`,
`--time-budget`, `--confirm`, `--address`, `--ray-storage`) are applied and saved to run.json, so a later
`--resume` without flags continues with them. A flag that would change what is searched (sampler,
objectives, seed, proxy training, data, `--from`) is refused when it differs from the run's value,
all such flags named at once, instead of being silently ignored.

The study (`open_study`). `trials.jsonl` is the source of truth; `study.db` is the Optuna study
that Ray's OptunaSearch asks, and it also numbers the trials: `lknas.trial` is the Optuna trial
number, which the study gives as its count of trials at `ask`. So the study must never hold fewer
trials than the log's highest number, or numbers are reused (two trials 0, one ERF file for both).
Kills leave the two apart in known ways, handled as follows:

- the study is consistent with the log: trials the killed process left RUNNING are told their
  outcome from the log when the log has their record, else FAIL;
- the study holds a finished trial the log lacks: Ray Tune tells the searcher (Optuna) before it
  calls the callback that appends the record, so a kill between the two leaves a result the
  sampler knows and the results do not. The study is rebuilt from the log, keeping that number as
  a FAIL placeholder (the log stays the one source of truth; the trial is run again);
- study.db is missing, unreadable, lacks this study, is behind the log (fewer trials than the log's
  highest number + 1) or disagrees with it (another architecture under a trial number): it is set
  aside (`study.db.broken-STAMP`, with its SQLite journal) and rebuilt from the log (`rebuild_study`).

A rebuilt study holds log trial n as Optuna trial n, with its params and distributions (replayed
through the space with a FixedTrial, as the worker does), its objective values and state (the
searcher's status mapping), hash and summary, and the constraint values the define-by-run
function would record, so the sampler learns from every finished trial. Numbers the log lacks
(trials that never finished) become FAIL placeholders; records under a negative or an already
taken number (duplicates left by older versions) are added after the others. Every number the
next `ask` gives therefore exceeds every number in the log.
"""
from __future__ import annotations

import datetime as dt
import math
import os
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from lknas.errors import LknasError
from lknas.io import atomic_path, write_json_atomic
from lknas.search.noise import is_confirm
from lknas.search.objectives import effective_counts, objective_values
from lknas.search.samplers import NATIVE_CONSTRAINTS, record_constraints
from lknas.search.searcher import optuna_state
from lknas.search.store import PARAM_PREFIX, RunStore
from lknas.search.trial import TrialContext, _space, _train_cfg, constraint_values
from lknas.space import SearchSpace
from lknas.space.configs import Objective

__all__ = ["resume_settings", "open_study", "rebuild_study", "study_storage", "CHANGEABLE_AT_RESUME"]

# flag -> the part of run.json that keeps it, for the flags a resume may change
CHANGEABLE_AT_RESUME = {"trials": "search", "max_concurrent": "search", "cpus_per_trial": "search",
                        "gpus_per_trial": "search", "time_budget": "search", "confirm": "search", "retime": "search",
                        "address": None, "ray_storage": None}
_FLAG_NAMES = {"dataset": "--data", "from_": "--from"}
_MISSING = object()


def _flag(key: str) -> str:
    return _FLAG_NAMES.get(key, "--" + key.replace("_", "-"))


def _show(value: Any) -> str:
    if isinstance(value, tuple) and all(isinstance(o, Objective) for o in value):
        return ",".join(f"{o.name}:{o.mode}" for o in value)
    return str(value)


def _saved(key: str, settings: dict[str, Any], space: SearchSpace) -> Any:
    """The run's value of an override key (what the search has been using), or _MISSING."""
    if key == "objectives":
        return tuple(Objective(**o) for o in settings["search"]["objectives"])
    if key in settings["search"]:
        return settings["search"][key]
    if key in settings.get("train_overrides", {}):
        return settings["train_overrides"][key]
    return getattr(space.train, key, _MISSING)


def resume_settings(store: RunStore, space: SearchSpace, overrides: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The run's settings with the resume's flags applied; changed ones are saved to run.json.

    Args:
        store: the run being resumed (its writer: the caller holds the run's lock).
        space: the run's space (space.yaml), for the train values the run did not override.
        overrides: `run_search` keyword overrides; None means "not given".

    Returns:
        (settings, notes): notes say what changed, e.g. "--trials 8 (was 4)".

    Raises:
        LknasError: a flag would change what the run searches (all such flags named at once).
    """
    settings = store.read_settings()
    notes, refused = [], []
    for key, value in overrides.items():
        if value is None:
            continue
        if key in CHANGEABLE_AT_RESUME:
            part = settings[CHANGEABLE_AT_RESUME[key]] if CHANGEABLE_AT_RESUME[key] else settings
            if part.get(key) != value:
                notes.append(f"{_flag(key)} {value} (was {part.get(key)})")
                part[key] = value
            continue
        saved = _saved(key, settings, space) if key != "from_" else _MISSING
        if saved is _MISSING or saved != value:
            was = "" if saved is _MISSING else f" (this run: {_show(saved)})"
            refused.append(f"{_flag(key)} {_show(value)}{was}")
    if refused:
        raise LknasError(f"{store.root}: a resume continues the same search, so it cannot take "
                         f"{'; '.join(refused)}. Leave these out, or start a new search (--space, another --out)")
    if notes:
        write_json_atomic(store.settings_file, settings)
    return settings, notes


# ----------------------------------------------------------------------------- the study
def study_storage(path: str | os.PathLike) -> optuna.storages.RDBStorage:
    """The SQLite storage of a run's study (waits up to 60 s for a busy database)."""
    return optuna.storages.RDBStorage(f"sqlite:///{Path(path).resolve()}",
                                      engine_kwargs={"connect_args": {"timeout": 60}})


def _close(storage: optuna.storages.RDBStorage) -> None:
    storage.remove_session()
    storage.engine.dispose()


def open_study(store: RunStore, study_name: str, ctx: TrialContext,
               objectives: tuple[Objective, ...]) -> tuple[optuna.storages.RDBStorage, list[str]]:
    """The run's study storage, reconciled with its trials.jsonl (see the module docstring).

    Returns:
        (storage, notes): notes say what was repaired, for the user.
    """
    rows = store.rows()
    notes = []
    problem = _study_problem(store.study_db, study_name, rows, objectives)
    if problem:
        reserved = _trial_count(store.study_db, study_name)
        kept = _set_aside(store.study_db)
        space = _space(ctx)
        count = rebuild_study(store.study_db, study_name, rows, space, ctx, objectives, reserved=reserved)
        notes.append(f"study.db {problem}: rebuilt it from trials.jsonl ({len(rows)} finished trials, "
                     f"{count} in the study)" + (f"; the old file is kept as {kept.name}" if kept else ""))
    storage = study_storage(store.study_db)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # a new search killed before its first trial was asked: Ray creates the study
        return storage, notes
    by_number = {r["trial"]: r for r in rows}
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        row = by_number.get(t.number)
        state = optuna_state(row["status"]) if row else TrialState.FAIL
        values = objective_values(row, objectives) if row and state == TrialState.COMPLETE else None
        if state == TrialState.COMPLETE and values is None:
            state = TrialState.FAIL
        study.tell(t.number, values, state=state)  # the log has it, or it was killed mid-trial
    if rows and len(study.trials) <= max(r["trial"] for r in rows):  # cannot happen after the checks above
        raise LknasError(f"{store.study_db}: the study would reuse trial numbers of {store.trials_jsonl}")
    return storage, notes


def _study_problem(path: Path, study_name: str, rows: list[dict[str, Any]],
                   objectives: tuple[Objective, ...]) -> str | None:
    """Why the study cannot be used as it is with this log, or None."""
    if not path.exists():
        return "is missing" if rows else None
    storage = None
    try:
        storage = study_storage(path)
        study = optuna.load_study(study_name=study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        directions = [d.name.lower() for d in study.directions]
    except KeyError:
        return f"holds no study {study_name!r}" if rows else None
    except Exception as err:  # noqa: BLE001  a corrupt or foreign file: sqlalchemy, sqlite, alembic errors
        return f"cannot be read ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    finally:
        if storage is not None:
            _close(storage)
    if directions != _directions(objectives):
        return "has other objectives than this run"
    top = max((r["trial"] for r in rows), default=-1)
    if len(trials) <= top:
        return f"is behind the log ({len(trials)} trials; the log has trial {top})"
    for r in rows:
        known = trials[r["trial"]].user_attrs.get("hash") if r["trial"] >= 0 else None
        if known and r.get("hash") and known != r["hash"]:
            return f"disagrees with the log on trial {r['trial']} (architecture {known}, the log: {r['hash']})"
    logged = {r["trial"] for r in rows}
    unlogged = [t.number for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                and t.number not in logged]
    if unlogged:
        shown = ", ".join(str(n) for n in unlogged[:5]) + (" ..." if len(unlogged) > 5 else "")
        return (f"is ahead of the log (trial {shown} finished in the study but not in trials.jsonl: "
                f"killed between Optuna's tell and the log's write)")
    return None


def _trial_count(path: Path, study_name: str) -> int:
    """How many trial numbers a study file has given out (0 when it cannot be read)."""
    if not path.exists():  # opening it would create it
        return 0
    storage = None
    try:
        storage = study_storage(path)
        return len(optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False))
    except Exception:  # noqa: BLE001  missing, corrupt or foreign: nothing to keep
        return 0
    finally:
        if storage is not None:
            _close(storage)


def _directions(objectives: tuple[Objective, ...]) -> list[str]:
    return ["maximize" if o.mode == "max" else "minimize" for o in objectives]


def _set_aside(path: Path) -> Path | None:
    """Rename a study file (and SQLite's journal files, which belong to it) out of the way."""
    if not path.exists():
        return None
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    kept = path.with_name(f"{path.name}.broken-{stamp}")
    for suffix in ("", "-journal", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            os.replace(src, f"{kept}{suffix}")
    return kept


def rebuild_study(path: str | os.PathLike, study_name: str, rows: list[dict[str, Any]], space: SearchSpace,
                  ctx: TrialContext, objectives: tuple[Objective, ...], reserved: int = 0) -> int:
    """Write a new study at `path` (atomically) holding the log's trials; returns its trial count.

    Numbers below `reserved` (those the old study gave out) are kept, as FAIL placeholders where
    the log has no record, so no number is ever given out twice."""
    first: dict[int, dict[str, Any]] = {}
    later: list[dict[str, Any]] = []
    for row in rows:
        if row["trial"] >= 0 and row["trial"] not in first:
            first[row["trial"]] = row
        else:
            later.append(row)
    ordered = [first.get(n) for n in range(max(max(first, default=-1) + 1, reserved))] + later
    with atomic_path(path) as tmp:
        storage = study_storage(tmp)
        try:
            study = optuna.create_study(storage=storage, study_name=study_name,
                                        directions=_directions(objectives))
            for n, row in enumerate(ordered):
                study.add_trial(_frozen(row, n, space, ctx, objectives))
            count = len(study.trials)
        finally:
            _close(storage)
    return count


def _frozen(row: dict[str, Any] | None, number: int, space: SearchSpace, ctx: TrialContext,
            objectives: tuple[Objective, ...]) -> optuna.trial.FrozenTrial:
    """One log record as a finished Optuna trial (a FAIL placeholder for a number without one)."""
    if row is None:
        return optuna.trial.create_trial(state=TrialState.FAIL,
                                         user_attrs={"lknas.rebuilt": "no record: did not finish"})
    if is_confirm(row):  # a re-training of a front member with another seed: a number, not a sample
        return optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={
            "lknas.rebuilt": f"confirm re-training of trial {row.get('confirms')}"})
    state = optuna_state(row["status"])
    values = objective_values(row, objectives) if state == TrialState.COMPLETE else None
    if state == TrialState.COMPLETE and values is None:
        state = TrialState.FAIL
    params = {k[len(PARAM_PREFIX):]: v for k, v in row.items() if k.startswith(PARAM_PREFIX)}
    fixed = optuna.trial.FixedTrial(params, number)
    try:
        arch = space.suggest(fixed)
        cfg = _train_cfg(space, fixed, ctx)
        replayed = not row.get("hash") or arch.hash() == row["hash"]
    except Exception:  # noqa: BLE001  e.g. a trial whose worker could not rebuild it either
        replayed = False
    if not replayed:  # the space does not give back this trial: keep its number, not its values
        return optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={
            "lknas.rebuilt": f"status {row['status']}; params not replayable", "hash": row.get("hash")})
    for key in ("hash", "summary"):
        if row.get(key) is not None:
            fixed.set_user_attr(key, row[key])
    fixed.set_user_attr("lknas.rebuilt", f"status {row['status']}")
    if state in (TrialState.COMPLETE, TrialState.PRUNED):
        record_constraints(fixed, _constraints(row, arch, cfg, space, ctx))
    intermediate = {}
    if state == TrialState.PRUNED and len(objectives) == 1:
        value = objective_values(row, objectives)
        if value is not None:
            intermediate = {int(row.get("epoch") or 1): value[0]}
    extra = {"constraints": dict(fixed.constraints)} if NATIVE_CONSTRAINTS else {}
    return optuna.trial.create_trial(state=state, values=values, params=fixed.params,
                                     distributions=fixed.distributions, user_attrs=dict(fixed.user_attrs),
                                     intermediate_values=intermediate, **extra)


def _constraints(row: dict[str, Any], arch, cfg, space: SearchSpace, ctx: TrialContext) -> dict[str, float]:
    """The constraint values the define-by-run function recorded: from the record's counts when
    the trial trained at the constraints' resolution (the same numbers), else counted again."""
    limits = space.constraints
    if all(getattr(limits, k) is None for k in ("max_params", "min_params", "max_flops", "min_flops")):
        return {}
    counts = row
    have = all(isinstance(row.get(k), (int, float)) and math.isfinite(row[k])
               for k in ("params_effective", "flops_effective"))
    if cfg.resolution != limits.resolution or not have:
        from lknas.measure.trial import measure_static

        counts = effective_counts(measure_static(arch, limits.resolution, ctx.num_classes, ctx.in_chans))
    return constraint_values(limits, counts)
