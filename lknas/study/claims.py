"""A study's points with their seed noise, and contrasts between points measured against it.

A claim such as "removing the shortcut costs a 13x13 net more than a 3x3 net" is a linear
contrast of point means: sum of w_p * mean_p (here: (with13 - without13) - (with3 - without3)).
With n_p seeds per point and the pooled within-point seed standard deviation s, its standard
error is s * sqrt(sum w_p^2 / n_p). A seed fixes the data order (and the initialization's random
stream) of every point, so some seeds are hard for all points alike (a late onset on Pathfinder);
`paired=True` therefore applies the weights seed by seed, over the seeds every point of the
contrast has, and takes the standard error of those per-seed contrasts (a paired / blocked
design), when there are two or more such seeds. A claim is `reproduced` when the contrast points the claimed
way by at least the two-sided 95% critical value of Student's t at the estimate's degrees of
freedom (seeds - 1 paired; sum of n_p - 1 pooled: 4.30 for 3 seeds, 2.78 for 5, 1.96 for many)
standard errors, `not reproduced` when it points the other way by as much, and `inconclusive`
otherwise: the effect is within the seed noise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from lknas.status import TrialStatus

__all__ = ["Contrast", "point_stats", "seed_sd", "contrast", "verdict", "t_critical"]

KEYS = ("variant", "point")
# two-sided 95% critical values of Student's t by degrees of freedom
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t_critical(dof: float) -> float:
    """The two-sided 95% critical value of Student's t (the nearest tabulated dof at or below;
    1.96 beyond 120; NaN below 1)."""
    if not dof >= 1:
        return math.nan
    if dof > 120:
        return 1.960
    return _T95[max(k for k in _T95 if k <= dof)]


def _ok(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    rows = df[df["status"] == TrialStatus.OK] if "status" in df else df
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
    paired_seeds: int = 0  # seeds the paired estimate used; 0: unpaired (pooled seed sd)
    dof: float = math.inf  # degrees of freedom of the standard error

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
             by: tuple[str, ...] = KEYS, paired: bool = True) -> Contrast:
    """The contrast sum w_p * mean_p over the points named in `weights` (keys: tuples of the `by`
    columns' values); paired by seed where two or more seeds are common to its points.

    Raises:
        KeyError: a point in `weights` has no ok trial.
    """
    stats = point_stats(df, metric, by).set_index(list(by))
    sd = seed_sd(df, metric, by)
    missing = [p for p in weights if p not in stats.index]
    if missing:
        raise KeyError(f"no ok trials at {missing}")
    if paired and "seed" in df:
        per_seed = _ok(df, metric).pivot_table(index=list(by), columns="seed", values=metric, aggfunc="mean")
        rows = per_seed.loc[list(weights)]
        common = rows.columns[rows.notna().all()]
        if len(common) >= 2:
            d = sum(w * rows.loc[p, common] for p, w in weights.items())
            return Contrast(float(d.mean()), float(d.std(ddof=1)) / math.sqrt(len(d)), sd, len(d), len(d) - 1)
    est = sum(w * float(stats.loc[p, "mean"]) for p, w in weights.items())
    se = sd * math.sqrt(sum(w * w / float(stats.loc[p, "n"]) for p, w in weights.items()))
    return Contrast(est, se, sd, 0, float((stats["n"] - 1).clip(lower=0).sum()))


def verdict(c: Contrast, direction: int | str = 1) -> str:
    """'reproduced' (the claimed sign by at least t_critical(c.dof) standard errors), 'not
    reproduced' (the other sign by as much) or 'inconclusive' (also without a noise estimate).
    direction "=" is a claim of equality: only a gap of t_critical standard errors either way
    decides it ('not reproduced'); anything less is inconclusive, within the noise."""
    crit = t_critical(c.dof)
    if direction == "=":
        if abs(c.z) >= crit:
            return "not reproduced"
        return f"inconclusive: within the noise ({abs(c.z):.1f} of {crit:.2f} standard errors)"
    signed = direction * c.z
    return "reproduced" if signed >= crit else "not reproduced" if signed <= -crit else "inconclusive"
