"""Seed noise of a Pareto set: accuracy mean +- std over the search trial and its confirm seeds,
and which front members lead only within that noise.

A confirm trial (`phase: confirm`, see `lknas.search.confirm`) re-trains one front member with
another seed; it is never a front point of its own. A trial that trained several seeds itself
(`search.trial_seeds`) counts each of its runs (`accuracy_seeds`). A front member's lead is *within noise* when
another front member that is at least as good on every other objective has a mean accuracy that
the member does not beat by more than two standard errors of the difference,
2 * sqrt(s_a^2 / n_a + s_b^2 / n_b): the cheaper one is then as good as far as the seeds can tell.
With a single seed (no confirm trials, one run per trial) nothing can be said, and `within_noise` is left empty.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from lknas.search.objectives import metric_of
from lknas.space.configs import Objective
from lknas.status import TrialStatus

__all__ = ["CONFIRM_PHASE", "is_confirm", "search_rows", "noise_columns", "NOISE_COLUMNS"]

CONFIRM_PHASE = "confirm"
NOISE_COLUMNS = ("accuracy_mean", "accuracy_std", "seeds", "within_noise", "noise_note")


def is_confirm(row: dict[str, Any] | pd.Series) -> bool:
    return row.get("phase") == CONFIRM_PHASE


def search_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The search's own trials (confirm re-trainings left out)."""
    if df.empty or "phase" not in df.columns:
        return df
    return df[df["phase"].fillna("") != CONFIRM_PHASE]


def _seed_values(df: pd.DataFrame, row: pd.Series) -> list[float]:
    """Each seed's accuracy: the trial's runs (`accuracy_seeds`, with `search.trial_seeds` > 1), else
    its one accuracy, then its confirm re-trainings'."""
    runs = row.get("accuracy_seeds")
    if isinstance(runs, (list, tuple)) and runs and all(isinstance(v, (int, float)) for v in runs):
        values = [float(v) for v in runs]
    else:
        values = [float(row["accuracy"])]
    if "confirms" in df.columns:
        extra = df[(df["confirms"] == row["trial"]) & (df["status"] == TrialStatus.OK)]["accuracy"]
        values += [float(v) for v in extra if isinstance(v, (int, float)) and math.isfinite(v)]
    return values


def noise_columns(front: pd.DataFrame, df: pd.DataFrame, objectives: tuple[Objective, ...]) -> pd.DataFrame:
    """`front` with `accuracy_mean`, `accuracy_std` (sample std, NaN for one seed), `seeds`,
    `within_noise` (True / False, None without repeats) and `noise_note` (which member it is
    within noise of). `df` holds every trial, the confirm ones included."""
    out = front.copy()
    if out.empty or "accuracy" not in out.columns:
        return out
    stats = {int(r["trial"]): _seed_values(df, r) for _, r in out.iterrows()}
    out["accuracy_mean"] = [float(np.mean(stats[int(t)])) for t in out["trial"]]
    out["accuracy_std"] = [float(np.std(stats[int(t)], ddof=1)) if len(stats[int(t)]) > 1 else float("nan")
                           for t in out["trial"]]
    out["seeds"] = [len(stats[int(t)]) for t in out["trial"]]
    others = [o for o in objectives if o.name != "accuracy"]
    flags, notes = [], []
    for _, a in out.iterrows():
        na, sa = len(stats[int(a["trial"])]), a["accuracy_std"]
        if na < 2 or not any(o.name == "accuracy" for o in objectives):
            flags.append(None)
            notes.append("")
            continue
        close = []
        for _, b in out.iterrows():
            if b["trial"] == a["trial"] or b["accuracy_mean"] >= a["accuracy_mean"]:
                continue
            if not all(_at_least_as_good(b, a, o) for o in others):
                continue
            nb, sb = len(stats[int(b["trial"])]), b["accuracy_std"]
            if nb < 2:
                continue
            margin = 2 * math.sqrt(sa ** 2 / na + sb ** 2 / nb)
            if a["accuracy_mean"] - b["accuracy_mean"] <= margin:
                close.append(f"trial {int(b['trial'])} ({b['accuracy_mean']:.1f} +- {sb:.1f})")
        flags.append(bool(close))
        notes.append("within noise of " + ", ".join(close) if close else "")
    out["within_noise"] = flags
    out["noise_note"] = notes
    return out


def _at_least_as_good(b: pd.Series, a: pd.Series, objective: Objective) -> bool:
    col = metric_of(objective)
    vb, va = b.get(col), a.get(col)
    if not isinstance(vb, (int, float)) or not isinstance(va, (int, float)):
        return False
    return vb >= va if objective.mode == "max" else vb <= va
