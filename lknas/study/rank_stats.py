"""How much a proxy ranking can be trusted: rank correlations with bootstrap intervals, and the
share of the variance that is seed noise (intra-class correlation).

Plain numpy, no scipy: Spearman's rho (Pearson correlation of average ranks), Kendall's tau-b
(ties counted as in scipy.stats.kendalltau), percentile bootstrap intervals over architectures
(each resample draws architectures with replacement, and for each of them its seeds with
replacement, so the interval carries both sources of uncertainty), and the one-way random-effects
ICC(1) of Shrout & Fleiss: the fraction of the accuracy variance between architectures that is
not seed-to-seed variance. ICC >= 0.75 means the architectures' spread is at least 3x the seeds'.
Its interval is Shrout & Fleiss's exact one from the F distribution (normal errors; with unequal
seed counts, k0 seeds each), with F quantiles from our own regularized incomplete beta function.
`seed_tau` says how well one budget reproduces its own ranking from seed to seed: a proxy's tau
against a target can hardly exceed the target's own. `runs_averaged` says how the agreement grows
when the proxy is the mean of k runs: the measured tau for every k up to the seeds measured, and
the Spearman-Brown ICC of a k-run mean, k*ICC / (1 + (k-1)*ICC), with the runs the ICC 0.75 bar needs.
`tau_ceiling` and `tau_corrected` separate noise from bias under a normal model, where Kendall's tau
and Pearson's r are tied by tau = (2/pi) asin(r) (Greiner's relation) and seed noise scales r by the
square root of each score's reliability (its ICC of the mean of k seeds): the ceiling is the tau a
noise-free proxy can expect against the target's k-seed means; the corrected tau is the measured one
with both budgets' seed noise divided out (Spearman's correction for attenuation). Near 1, the
proxy and the target rank alike but for noise; well below 1, the proxy is biased and more seeds at
either budget would not close the gap.
"""
from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["rankdata", "spearman", "kendall_tau", "icc_oneway", "seed_tau", "bootstrap_ci", "RankAgreement",
           "rank_agreement", "runs_averaged", "runs_for_icc", "spearman_brown", "tau_ceiling", "tau_corrected",
           "betainc", "f_cdf", "f_ppf"]


def rankdata(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, ties get the average of the ranks they span."""
    x = np.asarray(values, dtype=float)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=float)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (NaN when either side is constant)."""
    return _pearson(rankdata(x), rankdata(y))


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties_x)(n0 - ties_y))."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    dx = np.sign(a[:, None] - a[None, :])
    dy = np.sign(b[:, None] - b[None, :])
    iu = np.triu_indices(len(a), k=1)
    sx, sy = dx[iu], dy[iu]
    s = float((sx * sy).sum())
    nx, ny = float((sx != 0).sum()), float((sy != 0).sum())
    return s / np.sqrt(nx * ny) if nx > 0 and ny > 0 else float("nan")


def spearman_brown(icc: float, k: int) -> float:
    """The ICC of the mean of `k` runs per architecture, from the ICC of one run."""
    return k * icc / (1 + (k - 1) * icc) if math.isfinite(icc) and icc > 0 else float("nan")


def runs_for_icc(icc: float, bar: float = 0.75) -> int | None:
    """The fewest runs per architecture whose mean reaches ICC `bar` (Spearman-Brown); None when
    the single-run ICC is not positive (no number of runs would do)."""
    if not math.isfinite(icc) or icc <= 0:
        return None
    return max(1, math.ceil(bar * (1 - icc) / (icc * (1 - bar)) - 1e-9))


def tau_ceiling(reliability: float) -> float:
    """The Kendall tau a noise-free ranking can expect against scores of this `reliability`
    (the share of their variance that is true differences: the target's ICC of its k-seed mean);
    NaN when the reliability is not positive. Normal model, see the module docstring."""
    if not math.isfinite(reliability) or reliability <= 0:
        return float("nan")
    return 2 / math.pi * math.asin(math.sqrt(min(1.0, reliability)))


def tau_corrected(tau: float, reliability_proxy: float, reliability_target: float) -> float:
    """The Kendall tau between two sets of scores with their seed noise divided out: r = sin(pi tau / 2)
    over the square root of both reliabilities, back to tau, capped at +-1 (sampling error can
    carry the ratio past 1: read that as "no bias this measurement can see"). NaN when a
    reliability is not positive."""
    if not all(math.isfinite(v) for v in (tau, reliability_proxy, reliability_target)):
        return float("nan")
    if reliability_proxy <= 0 or reliability_target <= 0:
        return float("nan")
    r = math.sin(math.pi * tau / 2) / math.sqrt(min(1.0, reliability_proxy) * min(1.0, reliability_target))
    return 2 / math.pi * math.asin(max(-1.0, min(1.0, r)))


def runs_averaged(table: np.ndarray, target: Sequence[float], max_subsets: int = 200,
                  seed: int = 0) -> list[dict[str, float]]:
    """How the proxy's agreement with `target` grows with the runs averaged: `table[i, s]` is
    architecture i's proxy accuracy with seed s (rows with a missing seed are left out), `target[i]`
    its target mean. For each k from 1 to the seeds, the Kendall tau and Spearman rho of the mean
    of k of the seeds against the target, averaged over the k-subsets of the seeds (all of them, or
    `max_subsets` drawn at random when there are more): the agreement a proxy of k runs can expect."""
    table = np.asarray(table, dtype=float)
    target = np.asarray(target, dtype=float)
    keep = np.isfinite(table).all(axis=1) & np.isfinite(target)
    table, target = table[keep], target[keep]
    n_seeds = table.shape[1] if table.ndim == 2 else 0
    if len(target) < 3 or n_seeds == 0:
        return []
    rng = np.random.default_rng(seed)
    out = []
    for k in range(1, n_seeds + 1):
        if math.comb(n_seeds, k) <= max_subsets:
            subsets = list(itertools.combinations(range(n_seeds), k))
        else:  # drawn, never enumerated (C(100, 50) subsets would not fit in memory)
            subsets = [tuple(sorted(rng.choice(n_seeds, k, replace=False))) for _ in range(max_subsets)]
        taus, rhos = [], []
        for cols in subsets:
            mean = table[:, list(cols)].mean(axis=1)
            taus.append(kendall_tau(mean, target))
            rhos.append(spearman(mean, target))
        out.append({"runs": k, "kendall": _finite(np.mean, taus), "spearman": _finite(np.mean, rhos),
                    "kendall_min": _finite(np.min, taus), "kendall_max": _finite(np.max, taus),
                    "subsets": len(subsets)})
    return out


def _finite(stat, values: Sequence[float]) -> float:
    """`stat` of the finite values (NaN when there are none: a constant ranking has no tau)."""
    kept = [v for v in values if math.isfinite(v)]
    return float(stat(kept)) if kept else float("nan")


def seed_tau(table: np.ndarray) -> float:
    """Mean Kendall tau between the rankings of every pair of seeds: `table[i, s]` is architecture
    i's accuracy with seed s (NaN where missing; a pair uses the architectures it has both of, and
    counts when they are 3 or more). NaN when no pair counts."""
    table = np.asarray(table, dtype=float)
    taus = []
    for s in range(table.shape[1]):
        for t in range(s + 1, table.shape[1]):
            both = np.isfinite(table[:, s]) & np.isfinite(table[:, t])
            if both.sum() >= 3:
                taus.append(kendall_tau(table[both, s], table[both, t]))
    taus = [v for v in taus if np.isfinite(v)]
    return float(np.mean(taus)) if taus else float("nan")


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz evaluation); it
    converges fast for x < (a + 1) / (a + b + 2)."""
    tiny, eps = 1e-300, 1e-15

    def guard(v: float) -> float:
        return v if abs(v) > tiny else tiny

    c, d = 1.0, 1.0 / guard(1.0 - (a + b) * x / (a + 1.0))
    f = d
    for m in range(1, 1000):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),  # even step
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):  # odd step
            d = 1.0 / guard(1.0 + num * d)
            c = guard(1.0 + num / c)
            f *= c * d
        if abs(c * d - 1.0) < eps:
            break
    return f


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), a, b > 0."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def f_cdf(x: float, d1: float, d2: float) -> float:
    """P(F <= x) for an F distribution with d1 and d2 degrees of freedom."""
    if x <= 0.0:
        return 0.0
    return betainc(d1 / 2.0, d2 / 2.0, d1 * x / (d1 * x + d2))


@functools.lru_cache(maxsize=256)
def f_ppf(q: float, d1: float, d2: float) -> float:
    """The q-quantile of the F distribution (bisection on log x: the cdf is monotone)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile level must be in (0, 1), got {q}")
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if f_cdf(math.exp(mid), d1, d2) < q:
            lo = mid
        else:
            hi = mid
    return math.exp((lo + hi) / 2.0)


def _icc_interval(ms_between: float, ms_within: float, df1: float, df2: float, k: float,
                  level: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Shrout & Fleiss's intervals of ICC(1) and ICC(1,k) from the one-way ANOVA's mean squares."""
    nan = (float("nan"), float("nan"))
    if not (ms_within > 0 and ms_between > 0 and df1 >= 1 and df2 >= 1):  # no spread: no F ratio to bound
        return nan, nan
    f0 = ms_between / ms_within
    upper_q = 1.0 - (1.0 - level) / 2.0
    f_lo, f_hi = f0 / f_ppf(upper_q, df1, df2), f0 * f_ppf(upper_q, df2, df1)
    single = ((f_lo - 1.0) / (f_lo + k - 1.0), (f_hi - 1.0) / (f_hi + k - 1.0))
    mean = (1.0 - 1.0 / f_lo, 1.0 - 1.0 / f_hi)
    return single, mean


def _mean_squares(groups: Sequence[np.ndarray]) -> tuple[float, float] | None:
    """The one-way ANOVA's mean squares between and within groups; None without 2 groups and a repeat."""
    sizes = np.array([g.size for g in groups], dtype=float)
    if len(groups) < 2 or sizes.sum() - len(groups) < 1:
        return None
    grand = np.concatenate(groups).mean()
    ss_between = float(sum(g.size * (g.mean() - grand) ** 2 for g in groups))
    ss_within = float(sum(((g - g.mean()) ** 2).sum() for g in groups))
    return ss_between / (len(groups) - 1), ss_within / (sizes.sum() - len(groups))


def icc_oneway(groups: Sequence[Sequence[float]], level: float = 0.95) -> dict[str, float]:
    """One-way random-effects ICC over groups (architectures) of replicates (seeds).

    Returns `icc` (ICC(1): a single seed's reliability), `icc_mean` (ICC(1,k): the reliability of
    the mean of k seeds), `icc_ci` and `icc_mean_ci` (their `level` intervals, see the module
    docstring), `var_arch` and `var_seed` (variance components), `seed_share`
    (var_seed / (var_arch + var_seed)), `k` (replicates per group; k0 for unbalanced groups)."""
    data = [np.asarray(g, dtype=float) for g in groups if len(g) >= 1]
    data = [g[np.isfinite(g)] for g in data]
    data = [g for g in data if len(g) >= 1]
    n_groups = len(data)
    sizes = np.array([len(g) for g in data], dtype=float)
    total = sizes.sum()
    if n_groups < 2 or total - n_groups < 1:
        raise ValueError("the ICC needs at least 2 architectures and one of them with 2 or more seeds")
    ms_between, ms_within = _mean_squares(data)
    k0 = (total - (sizes ** 2).sum() / total) / (n_groups - 1)
    var_arch = max(0.0, (ms_between - ms_within) / k0)
    var_seed = ms_within
    denom = ms_between + (k0 - 1) * ms_within
    icc = (ms_between - ms_within) / denom if denom > 0 else float("nan")
    icc_mean = (ms_between - ms_within) / ms_between if ms_between > 0 else float("nan")
    share = var_seed / (var_arch + var_seed) if var_arch + var_seed > 0 else float("nan")
    icc_ci, icc_mean_ci = _icc_interval(ms_between, ms_within, n_groups - 1, total - n_groups, k0, level)
    return {"icc": float(icc), "icc_mean": float(icc_mean), "icc_ci": [float(v) for v in icc_ci],
            "icc_mean_ci": [float(v) for v in icc_mean_ci], "var_arch": var_arch, "var_seed": var_seed,
            "seed_share": float(share), "k": float(k0), "archs": n_groups}


def bootstrap_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (NaNs dropped)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(v, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def _reliability(groups: Sequence[np.ndarray]) -> float:
    """ICC(1,k) of the group means, (MSB - MSW) / MSB, without intervals (for bootstrap replicates)."""
    squares = _mean_squares(groups)
    if squares is None:
        return float("nan")
    ms_between, ms_within = squares
    return (ms_between - ms_within) / ms_between if ms_between > 0 else float("nan")


@dataclass(frozen=True)
class RankAgreement:
    """Agreement of the ranking at a cheap budget with the ranking at a target budget."""

    archs: int
    spearman: float
    spearman_ci: tuple[float, float]
    kendall: float
    kendall_ci: tuple[float, float]
    icc_proxy: dict[str, float]
    icc_target: dict[str, float] | None
    resamples: int
    tau_ceiling: float = float("nan")
    tau_ceiling_ci: tuple[float, float] = (float("nan"), float("nan"))
    tau_corrected: float = float("nan")
    tau_corrected_ci: tuple[float, float] = (float("nan"), float("nan"))

    def to_dict(self) -> dict:
        return {"archs": self.archs, "spearman": self.spearman, "spearman_ci": list(self.spearman_ci),
                "kendall": self.kendall, "kendall_ci": list(self.kendall_ci), "icc_proxy": self.icc_proxy,
                "icc_target": self.icc_target, "resamples": self.resamples, "tau_ceiling": self.tau_ceiling,
                "tau_ceiling_ci": list(self.tau_ceiling_ci), "tau_corrected": self.tau_corrected,
                "tau_corrected_ci": list(self.tau_corrected_ci)}


def rank_agreement(proxy: Sequence[Sequence[float]], target: Sequence[Sequence[float]],
                   resamples: int = 2000, seed: int = 0) -> RankAgreement:
    """Rank correlation between the per-architecture mean accuracies at the two budgets, with
    bootstrap intervals, the ICC at each budget, and (with 2+ target seeds somewhere) the noise
    ceiling and the noise-corrected tau with theirs. `proxy[i]` / `target[i]` are architecture
    i's accuracies over seeds (the same architectures in the same order)."""
    if len(proxy) != len(target):
        raise ValueError("proxy and target must list the same architectures")
    pairs = [(np.asarray(p, float), np.asarray(t, float)) for p, t in zip(proxy, target)]
    pairs = [(p[np.isfinite(p)], t[np.isfinite(t)]) for p, t in pairs]
    pairs = [(p, t) for p, t in pairs if p.size and t.size]
    if len(pairs) < 3:
        raise ValueError(f"rank correlations need at least 3 architectures measured at both budgets, got {len(pairs)}")
    mp = np.array([p.mean() for p, _ in pairs])
    mt = np.array([t.mean() for _, t in pairs])
    rng = np.random.default_rng(seed)
    rhos, taus, ceilings, corrected = [], [], [], []
    n = len(pairs)
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        bp = [pairs[i][0][rng.integers(0, pairs[i][0].size, pairs[i][0].size)].mean() for i in idx]
        bt = [pairs[i][1][rng.integers(0, pairs[i][1].size, pairs[i][1].size)].mean() for i in idx]
        rhos.append(spearman(bp, bt))
        taus.append(kendall_tau(bp, bt))
        # the noise statistics resample architectures only: redrawing 2 seeds with replacement would
        # give half the replicates no seed spread at all and inflate both reliabilities
        rel_t = _reliability([pairs[i][1] for i in idx])
        ceilings.append(tau_ceiling(rel_t))
        corrected.append(tau_corrected(kendall_tau(mp[idx], mt[idx]), _reliability([pairs[i][0] for i in idx]), rel_t))
    multi_t = sum(t.size >= 2 for _, t in pairs) >= 1
    icc_p = icc_oneway([p for p, _ in pairs])
    icc_t = icc_oneway([t for _, t in pairs]) if multi_t else None
    kendall = kendall_tau(mp, mt)
    noise = {}
    if icc_t:  # replicates whose reliability is not positive give NaN: left out of the interval
        noise = {"tau_ceiling": tau_ceiling(icc_t["icc_mean"]), "tau_ceiling_ci": bootstrap_ci(ceilings),
                 "tau_corrected": tau_corrected(kendall, icc_p["icc_mean"], icc_t["icc_mean"]),
                 "tau_corrected_ci": bootstrap_ci(corrected)}
    return RankAgreement(
        archs=n, spearman=spearman(mp, mt), spearman_ci=bootstrap_ci(rhos), kendall=kendall,
        kendall_ci=bootstrap_ci(taus), icc_proxy=icc_p, icc_target=icc_t, resamples=resamples, **noise,
    )
