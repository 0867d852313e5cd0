"""A study's points with their seed noise, and contrasts between points measured against it.

A claim such as "removing the shortcut costs a 13x13 net more than a 3x3 net" is a linear
contrast of point means: sum of w_p * mean_p (here: (with13 - without13) - (with3 - without3)).
With n_p seeds per point and the pooled within-point seed standard deviation s, its standard
error is s * sqrt(sum w_p^2 / n_p). A claim is `reproduced` when the contrast points the claimed
way by at least `z` (default 2) standard errors, `not reproduced` when it points the other way
by as much, and `inconclusive` otherwise: the effect is within the seed noise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

__all__ = ["Contrast", "point_stats", "seed_sd", "contrast", "verdict"]

KEYS = ("variant", "point")


def _ok(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    rows = df[df["status"] == "ok"] if "status" in df else df
    return rows[rows[metric].notna()]


def point_stats(df: pd.DataFrame, metric: str = "accuracy", by: tuple[str, ...] = KEYS) -> pd.DataFrame:
    """Per point: `mean`, `std` (over seeds, ddof 1; NaN for one seed) and `n` of `metric`, over
    the trials with status ok."""
    g = _ok(df, metric).groupby(list(by), sort=False)[metric]
    return g.agg(mean="mean", std="std", n="count").reset_index()


def seed_sd(df: pd.DataFrame, metric: str = "accuracy", by: tuple[str, ...] = KEYS) -> float:
    """The pooled within-point standard deviation over seeds: sqrt(sum (n_p - 1) s_p^2 /
    sum (n_p - 1)); NaN when no point has two seeds."""
    stats = point_stats(df, metric, by)
    dof = (stats["n"] - 1).clip(lower=0)
    if dof.sum() == 0:
        return float("nan")
    return math.sqrt(float((dof * stats["std"].fillna(0.0) ** 2).sum() / dof.sum()))


@dataclass(frozen=True)
class Contrast:
    """sum w_p * mean_p, its standard error, and both in seed standard deviations."""

    estimate: float
    se: float
    seed_sd: float

    @property
    def z(self) -> float:
        """The estimate in standard errors (NaN without a noise estimate: one seed per point)."""
        if math.isnan(self.se):
            return math.nan
        return self.estimate / self.se if self.se > 0 else math.copysign(math.inf, self.estimate)

    @property
    def in_seed_sd(self) -> float:
        """The estimate in seed standard deviations (the effect size against one seed's noise)."""
        return self.estimate / self.seed_sd if self.seed_sd > 0 else math.copysign(math.inf, self.estimate)


def contrast(df: pd.DataFrame, weights: dict[tuple, float], metric: str = "accuracy",
             by: tuple[str, ...] = KEYS) -> Contrast:
    """The contrast sum w_p * mean_p over the points named in `weights` (keys: tuples of the `by`
    columns' values).

    Raises:
        KeyError: a point in `weights` has no ok trial.
    """
    stats = point_stats(df, metric, by).set_index(list(by))
    sd = seed_sd(df, metric, by)
    missing = [p for p in weights if p not in stats.index]
    if missing:
        raise KeyError(f"no ok trials at {missing}")
    est = sum(w * float(stats.loc[p, "mean"]) for p, w in weights.items())
    se = sd * math.sqrt(sum(w * w / float(stats.loc[p, "n"]) for p, w in weights.items()))
    return Contrast(est, se, sd)


def verdict(c: Contrast, direction: int = 1, z: float = 2.0) -> str:
    """'reproduced' (the claimed sign by >= z standard errors), 'not reproduced' (the other sign by
    as much) or 'inconclusive' (also without a noise estimate)."""
    signed = direction * c.z
    return "reproduced" if signed >= z else "not reproduced" if signed <= -z else "inconclusive"
