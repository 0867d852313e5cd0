"""Empirical distribution functions of error (RegNet / pycls design-space comparison).

F(e) = fraction of models with error < e. A design space whose EDF lies to the left (more good
models at every error) is the better space; the same comparison works per kernel type.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from lknas.status import TrialStatus

__all__ = ["edf", "error_edfs", "kernel_type_of"]


def edf(errors) -> tuple[np.ndarray, np.ndarray]:
    """Sorted errors and F at each: the fraction of models with error <= that value (a step
    function that reaches 1 at the worst model)."""
    e = np.sort(np.asarray([x for x in errors if x is not None and np.isfinite(x)], dtype=float))
    return e, np.arange(1, len(e) + 1) / max(len(e), 1)


def kernel_type_of(row: pd.Series | dict) -> str:
    """'dense', 'stripe', 'dense/peripheral', ... of a result row (its summary's first word)."""
    summary = row.get("summary") if hasattr(row, "get") else None
    if isinstance(summary, str) and summary:
        return summary.split(" ", 1)[0]
    value = row.get("param.kernel_type") if hasattr(row, "get") else None
    return str(value) if isinstance(value, str) else "unknown"


def error_edfs(frames: dict[str, pd.DataFrame] | pd.DataFrame, by: str | None = "kernel_type",
               ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """EDFs of top-1 error (100 - accuracy) of the trials with status ok, one per group: per value
    of column `by` of one results frame, or per named frame (e.g. one per search space)."""
    if isinstance(frames, pd.DataFrame):
        df = frames[frames["status"] == TrialStatus.OK] if "status" in frames.columns else frames
        if df.empty or "accuracy" not in df.columns:
            return {}
        keys = df.apply(kernel_type_of, axis=1) if by == "kernel_type" and by not in df.columns else df[by]
        return {str(k): edf(100.0 - g["accuracy"]) for k, g in df.groupby(keys, sort=True)}
    out = {}
    for name, df in frames.items():
        ok = df[df["status"] == TrialStatus.OK] if "status" in df.columns else df
        if not ok.empty and "accuracy" in ok.columns:
            out[name] = edf(100.0 - ok["accuracy"])
    return out
