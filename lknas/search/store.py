"""The results of a search run, on disk: `results/RUN/`.

`trials.jsonl` is the source of truth: one JSON line per finished trial, appended and fsynced, so
a killed search loses at most the trial being written. The run directory has one writer at a time
(`hold`, see `runlock`); the log is a log of records, read defensively:

- A record is a JSON object with an integer `trial` and a string `status`. Any other line (a torn
  write, `null`, `[1, 2]`, a hand edit) is skipped on reading, with one `RunLogWarning` per read
  that names the file and the line numbers, so readers never fail on a line's shape.
- A torn tail (a kill mid-write leaves a last line without its newline) is repaired before the
  next record is appended (`repair_tail`): otherwise that record would be glued onto the fragment
  and lost with it. A tail that is a whole record missing only its newline is kept (terminated);
  any other tail is cut off at the last newline. Cutting, not terminating, because a fragment can
  never become a record: kept as a line it would be skipped, and warned about, on every later read.

`retime.json` holds the latency front's quiet re-timings (`lknas.search.retime`); the frame
carries their mean as `latency_ms`. Everything else is derived from these and rewritten
atomically after each trial: `trials.csv`,
`trials.parquet`, `pareto.csv`, `archs/*.yaml` (the Pareto set) and `summary.txt`. A trial's ERF
heatmap (the trained network's, when the trial measured it) goes to `erf/trial-NNNN.npy`.
"""
from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from lknas.arch import ArchConfig
from lknas.errors import LknasError
from lknas.io import atomic_path, write_json_atomic, write_text_atomic
from lknas.search.hypervolume import minimized
from lknas.search.noise import noise_columns, search_rows
from lknas.search.objectives import metric_of, objective_values
from lknas.search.retime import apply_retimed, read_retimed
from lknas.search.runlock import RunLock, hold_run
from lknas.space.configs import Objective
from lknas.status import TrialStatus

__all__ = ["RunStore", "RunLogWarning", "load_results", "pareto_mask", "first_per_architecture", "nondominated_fronts",
           "parse_record", "read_records", "check_study_db", "settings_problems", "run_objectives", "PARAM_PREFIX",
           "FEASIBLE"]

PARAM_PREFIX = "param."
FEASIBLE = TrialStatus.OK  # the only status that can be on the Pareto front
# first columns of trials.csv, in this order; then params, then the rest
LEAD_COLUMNS = ("trial", "status", "hash", "summary", "accuracy", "latency_ms", "params_effective",
                "flops_effective", "erf", "reason", "error")


class RunLogWarning(UserWarning):
    """Lines of a run's trials.jsonl were not trial records and were skipped, or its tail was repaired."""


def parse_record(line: bytes | str) -> tuple[dict[str, Any] | None, str]:
    """One line of trials.jsonl -> (the record, "") or (None, why it is not one)."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, "not JSON"
    if not isinstance(record, dict):
        return None, f"a JSON {type(record).__name__}, not an object"
    trial, status = record.get("trial"), record.get("status")
    if not isinstance(trial, int) or isinstance(trial, bool):
        return None, "no integer 'trial'"
    if not isinstance(status, str):
        return None, "no string 'status'"
    return record, ""


def read_records(path: Path, stacklevel: int = 2) -> list[dict[str, Any]]:
    """The trial records of a trials JSONL file, in order ([] if it does not exist). Lines that are
    not trial records (`parse_record`) are skipped, with one RunLogWarning naming the file and
    their line numbers."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    rows, skipped = [], []
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record, why = parse_record(line)
        if record is None:
            torn = number == len(lines)  # no newline after it: a write cut off, or under way
            skipped.append(f"line {number} ({'torn last line' if torn else why})")
        else:
            rows.append(record)
    if skipped:
        shown = ", ".join(skipped[:10]) + (f" and {len(skipped) - 10} more" if len(skipped) > 10 else "")
        warnings.warn(f"{path}: skipped {len(skipped)} line(s) that are not trial records: {shown}",
                      RunLogWarning, stacklevel=stacklevel)
    return rows


def nondominated_fronts(values: np.ndarray) -> list[list[int]]:
    """Row indices by front (every column minimized): front 1 is the rows no row dominates (<= in
    all columns, < in one), front 2 those only front 1 dominates, and so on; each front in row order."""
    values = np.asarray(values, dtype=float)
    left = list(range(len(values)))
    fronts = []
    while left:
        front = [i for i in left if not any(
            np.all(values[j] <= values[i]) and np.any(values[j] < values[i]) for j in left if j != i)]
        fronts.append(front)
        taken = set(front)
        left = [i for i in left if i not in taken]
    return fronts


def pareto_mask(values: list[list[float]], modes: list[str]) -> list[bool]:
    """True for each point that no other point dominates (>= in all objectives, > in one),
    objectives maximized or minimized per `modes`."""
    if len(values) == 0:
        return []
    front = set(nondominated_fronts(minimized(values, modes))[0])
    return [i in front for i in range(len(values))]


def first_per_architecture(frame: pd.DataFrame) -> np.ndarray:
    """A boolean array over `frame`'s rows: False for a trial of an architecture (`hash`) that an
    earlier trial in `frame` also trained, so each architecture counts once; rows without a hash
    are all kept."""
    keep = np.ones(len(frame), dtype=bool)
    if frame.empty or "hash" not in frame.columns or "trial" not in frame.columns:
        return keep
    order = np.argsort(pd.to_numeric(frame["trial"], errors="coerce").to_numpy(), kind="stable")
    seen = set()
    for pos in order:
        key = frame["hash"].iloc[pos]
        if pd.isna(key):
            continue
        keep[pos] = key not in seen
        seen.add(key)
    return keep


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @contextlib.contextmanager
    def hold(self, command: str) -> Iterator[RunLock]:
        """Be the run's one writer inside the block (`runlock.hold_run` on RUN/.lock).

        Raises:
            RunBusyError: another process writes this run (the message names its pid and host).
        """
        with hold_run(self.root, command) as lock:
            yield lock

    # ----------------------------------------------------------------- paths
    @property
    def trials_jsonl(self) -> Path:
        return self.root / "trials.jsonl"

    @property
    def settings_file(self) -> Path:
        return self.root / "run.json"

    @property
    def study_db(self) -> Path:
        return self.root / "study.db"

    @property
    def space_file(self) -> Path:
        return self.root / "space.yaml"

    # ----------------------------------------------------------------- settings
    def write_settings(self, settings: dict[str, Any]) -> None:
        write_json_atomic(self.settings_file, settings)

    def read_settings(self) -> dict[str, Any]:
        if not self.settings_file.is_file():
            raise LknasError(f"{self.root}: not a search run (no run.json); give the directory a search wrote, "
                             f"e.g. results/peleK_space-20261122-101500")
        try:
            settings = json.loads(self.settings_file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise LknasError(f"{self.settings_file}: cannot read the run's settings ({err}); {_REWRITE}") from None
        problems = settings_problems(settings)
        if problems:
            raise LknasError(f"{self.settings_file}: malformed run settings: {'; '.join(problems)}; {_REWRITE}")
        return settings

    def erf_file(self, trial: int) -> Path:
        return self.root / "erf" / f"trial-{int(trial):04d}.npy"

    def erf_map(self, trial: int) -> np.ndarray | None:
        """The trained network's ERF heatmap of `trial`, if the trial measured one."""
        path = self.erf_file(trial)
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None

    # ----------------------------------------------------------------- trials
    def append(self, row: dict[str, Any]) -> None:
        """Add one finished trial durably (its `erf_map`, if any, to `erf/`, not to the table)."""
        self.root.mkdir(parents=True, exist_ok=True)
        row = dict(row)
        heatmap = row.pop("erf_map", None)
        if heatmap is not None and row.get("trial") is not None:
            with atomic_path(self.erf_file(row["trial"])) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, np.asarray(heatmap, dtype=np.float32), allow_pickle=False)
        line = json.dumps(row, default=_json_default) + "\n"
        self.repair_tail()
        with open(self.trials_jsonl, "a") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def repair_tail(self) -> str | None:
        """Make trials.jsonl end at a line boundary (see the module docstring): a last line without
        its newline is terminated if it is a whole record, else cut off. Returns what was done
        ("terminated", "cut") or None when the tail was whole; a repair also warns. Only the
        run's writer may call this."""
        try:
            fh = open(self.trials_jsonl, "rb+")
        except FileNotFoundError:
            return None
        with fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return None
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return None
            fh.seek(0)
            data = fh.read()
            start = data.rfind(b"\n") + 1
            record, _ = parse_record(data[start:])
            if record is not None:
                fh.write(b"\n")
                action = "terminated"
            else:
                fh.truncate(start)
                action = "cut"
            fh.flush()
            os.fsync(fh.fileno())
        line = data.count(b"\n") + 1
        what = (f"line {line} was a whole record without its newline: terminated it" if action == "terminated"
                else f"line {line} was a torn write ({size - start} bytes, a kill mid-write?): cut it off")
        warnings.warn(f"{self.trials_jsonl}: {what}", RunLogWarning, stacklevel=2)
        return action

    def rows(self) -> list[dict[str, Any]]:
        """Every finished trial, in log order (`read_records`)."""
        return read_records(self.trials_jsonl, stacklevel=3)

    def frame(self) -> pd.DataFrame:
        rows = self.rows()
        if not rows:
            return pd.DataFrame(columns=["trial", "status"])
        df = pd.DataFrame(rows)
        params = sorted(c for c in df.columns if c.startswith(PARAM_PREFIX))
        lead = [c for c in LEAD_COLUMNS if c in df.columns]
        rest = [c for c in df.columns if c not in lead and c not in params and c != "arch_yaml"]
        tail = ["arch_yaml"] if "arch_yaml" in df.columns else []
        df = df[lead + params + rest + tail].sort_values("trial", kind="stable").reset_index(drop=True)
        return apply_retimed(df, read_retimed(self.root))  # the latency front's quiet re-timings, if any

    # ----------------------------------------------------------------- derived files
    def pareto(self, objectives: tuple[Objective, ...], df: pd.DataFrame | None = None) -> pd.DataFrame:
        """Feasible, fully trained search trials that no other such trial dominates, best first
        objective first, with their seed noise (`lknas.search.noise`: accuracy mean +- std over
        the confirm re-trainings, `within_noise`). Each architecture (`hash`) is on it once: a
        sampler can propose an architecture again, and its trials then tie (the same training seed,
        and after the retime phase the same latency); the earliest stands for it, so the confirm
        phase re-trains it once and pareto.csv, archs/ and the report list it once."""
        df = self.frame() if df is None else df
        if df.empty or "status" not in df.columns:
            return df.iloc[0:0]
        ok = search_rows(df)
        ok = ok[ok["status"] == FEASIBLE]
        points, index = [], []
        for i, row in ok.iterrows():
            values = objective_values(row.to_dict(), objectives)
            if values is not None:
                points.append(values)
                index.append(i)
        if not points:
            return df.iloc[0:0]
        mask = pareto_mask(points, [o.mode for o in objectives])
        front = ok.loc[[i for i, keep in zip(index, mask) if keep]]
        front = front[first_per_architecture(front)]
        first = objectives[0]
        front = front.sort_values(metric_of(first), ascending=first.mode == "min", kind="stable")
        return noise_columns(front, df, objectives)

    def refresh(self, objectives: tuple[Objective, ...], summary: str | None = None) -> pd.DataFrame:
        """Rewrite trials.csv/.parquet, pareto.csv, archs/ and (if given) summary.txt. Returns the
        Pareto frame."""
        df = self.frame()
        _write_frame(df, self.root / "trials.csv", self.root / "trials.parquet")
        front = self.pareto(objectives, df)
        with atomic_path(self.root / "pareto.csv") as tmp:
            front.drop(columns=["arch_yaml"], errors="ignore").to_csv(tmp, index=False)
        archs = self.root / "archs"
        archs.mkdir(exist_ok=True)
        keep = set()
        for _, row in front.iterrows():
            name = arch_file_name(row)
            keep.add(name)
            write_text_atomic(archs / name, _arch_file_text(row, objectives))
        for stale in archs.glob("*.yaml"):
            if stale.name not in keep:
                stale.unlink()
        if summary is not None:
            write_text_atomic(self.root / "summary.txt", summary)
        return front


_REWRITE = ("the file is written by `python -m lknas search` / `scale`: restore it from a backup, or start a new "
            "run with another --out")


def settings_problems(settings: Any) -> list[str]:
    """What is wrong with the contents of a run.json (empty when nothing): a JSON object whose
    `search` section passes the space file's own checks (objectives, trials, resources)."""
    from lknas.space.configs import parse_search

    if not isinstance(settings, dict):
        return [f"expected a JSON object, found {type(settings).__name__}"]
    if not isinstance(settings.get("search"), dict):
        return ["no 'search' object"]
    issues: list[tuple[str, str]] = []
    parse_search(settings["search"], issues)
    return [f"{path}: {message}" for path, message in issues]


def run_objectives(settings: dict[str, Any]) -> tuple[Objective, ...]:
    """The objectives of a run's settings (as `read_settings` returned them), as the space file
    reads them: names or {name, mode} mappings, the defaults when absent."""
    from lknas.space.configs import parse_search

    return parse_search(settings.get("search"), []).objectives


def check_study_db(path: str | os.PathLike) -> None:
    """LknasError unless `path` (a run's study.db) is absent or a readable SQLite database; Optuna
    would otherwise fail deep inside SQLAlchemy."""
    import sqlite3

    path = Path(path)
    if not path.exists():
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            status = db.execute("PRAGMA quick_check").fetchone()
    except sqlite3.Error as err:
        status = (str(err),)
    if not status or status[0] != "ok":
        raise LknasError(f"{path}: the Optuna study is not a readable SQLite database ({status[0] if status else '?'}); "
                         f"restore it from a backup, or move it away (the sampler then starts afresh and the report "
                         f"has no parameter importances)")


def arch_file_name(row: dict[str, Any] | pd.Series) -> str:
    return f"trial{int(row['trial']):04d}-{row['hash']}.yaml"


def _arch_file_text(row: pd.Series, objectives: tuple[Objective, ...]) -> str:
    """The architecture YAML with provenance comments (run, trial, metrics); loads with load_arch."""
    metrics = ", ".join(f"{o.name} {row[metric_of(o)]:.6g}" for o in objectives)
    arch = ArchConfig.from_yaml(row["arch_yaml"])
    noise = ""
    if row.get("seeds", 1) > 1:
        noise = (f"# accuracy over {int(row['seeds'])} seeds: {row['accuracy_mean']:.2f} +- {row['accuracy_std']:.2f}"
                 + (f" ({row['noise_note']})" if row.get("within_noise") else "") + "\n")
    timings = row.get("latency_timings", 0)
    if isinstance(timings, (int, float)) and timings > 1:
        noise += (f"# latency over {int(timings)} quiet re-timings: {row['latency_ms']:.3f} +- "
                  f"{row['latency_std_ms']:.3f} ms (in its trial: {row['latency_search_ms']:.3f} ms)\n")
    return (f"# lknas search result: trial {int(row['trial'])} ({row['hash']}): {arch.summary()}\n"
            f"# {metrics}\n" + noise + row["arch_yaml"] + _train_section(row))


def _train_section(row: pd.Series) -> str:
    """The proxy training the trial ran, as the file's `train` section, with the command that
    repeats it (same data, seed and thread count: the same accuracy on the same machine)."""
    train = row.get("train")
    if not isinstance(train, dict) or not train:
        return ""
    threads = row.get("train_threads")
    threads = int(threads) if isinstance(threads, (int, float)) and threads == threads else 1
    return (f"# the proxy training of this trial; `python -m lknas train-proxy --arch FILE --threads {threads}` "
            f"repeats it\n" + yaml.safe_dump({"train": train}, sort_keys=False))


def _write_frame(df: pd.DataFrame, csv_path: Path, parquet_path: Path) -> None:
    with atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False)
    # parquet needs one type per column: mixed object columns (e.g. param values of several
    # types) are stored as strings there; the CSV and JSONL keep them as they are
    pq = df.copy()
    for col in pq.columns:
        if pq[col].dtype == object:
            kinds = {type(v) for v in pq[col].dropna()}
            if len(kinds) > 1 or kinds - {str}:
                pq[col] = pq[col].map(lambda v: None if v is None or (isinstance(v, float) and v != v) else str(v))
    with atomic_path(parquet_path) as tmp:
        pq.to_parquet(tmp, index=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def load_results(run: str | os.PathLike) -> pd.DataFrame:
    """One row per finished trial of a search run (status, `param.*` dimensions, the ArchConfig
    YAML and hash, every metric, timings, error message)."""
    store = RunStore(run)
    if not store.root.is_dir():
        raise LknasError(f"{run}: no such run directory")
    if not store.trials_jsonl.is_file() and not store.settings_file.is_file():
        raise LknasError(f"{run}: not a search run (no trials.jsonl or run.json)")
    return store.frame()
