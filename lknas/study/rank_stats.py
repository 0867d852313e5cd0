"""How much a proxy ranking can be trusted: rank correlations with bootstrap intervals, and the
share of the variance that is seed noise (intra-class correlation).

Plain numpy, no scipy: Spearman's rho (Pearson correlation of average ranks), Kendall's tau-b
(ties counted as in scipy.stats.kendalltau), percentile bootstrap intervals over architectures
(each resample draws architectures with replacement, and for each of them its seeds with
replacement, so the interval carries both sources of uncertainty), and the one-way random-effects
ICC(1) of Shrout & Fleiss: the fraction of the accuracy variance between architectures that is
not seed-to-seed variance. ICC >= 0.75 means the architectures' spread is at least 3x the seeds'.
`seed_tau` says how well one budget reproduces its own ranking from seed to seed: a proxy's tau
against a target can hardly exceed the target's own.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["rankdata", "spearman", "kendall_tau", "icc_oneway", "seed_tau", "bootstrap_ci", "RankAgreement",
           "rank_agreement"]


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


def icc_oneway(groups: Sequence[Sequence[float]]) -> dict[str, float]:
    """One-way random-effects ICC over groups (architectures) of replicates (seeds).

    Returns `icc` (ICC(1): a single seed's reliability), `icc_mean` (ICC(1,k): the reliability of
    the mean of k seeds), `var_arch` and `var_seed` (variance components), `seed_share`
    (var_seed / (var_arch + var_seed)), `k` (replicates per group; k0 for unbalanced groups)."""
    data = [np.asarray(g, dtype=float) for g in groups if len(g) >= 1]
    data = [g[np.isfinite(g)] for g in data]
    data = [g for g in data if len(g) >= 1]
    n_groups = len(data)
    sizes = np.array([len(g) for g in data], dtype=float)
    total = sizes.sum()
    if n_groups < 2 or total - n_groups < 1:
        raise ValueError("the ICC needs at least 2 architectures and one of them with 2 or more seeds")
    grand = np.concatenate(data).mean()
    ss_between = float(sum(len(g) * (g.mean() - grand) ** 2 for g in data))
    ss_within = float(sum(((g - g.mean()) ** 2).sum() for g in data))
    ms_between = ss_between / (n_groups - 1)
    ms_within = ss_within / (total - n_groups)
    k0 = (total - (sizes ** 2).sum() / total) / (n_groups - 1)
    var_arch = max(0.0, (ms_between - ms_within) / k0)
    var_seed = ms_within
    denom = ms_between + (k0 - 1) * ms_within
    icc = (ms_between - ms_within) / denom if denom > 0 else float("nan")
    icc_mean = (ms_between - ms_within) / ms_between if ms_between > 0 else float("nan")
    share = var_seed / (var_arch + var_seed) if var_arch + var_seed > 0 else float("nan")
    return {"icc": float(icc), "icc_mean": float(icc_mean), "var_arch": var_arch, "var_seed": var_seed,
            "seed_share": float(share), "k": float(k0), "archs": n_groups}


def bootstrap_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (NaNs dropped)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(v, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


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

    def to_dict(self) -> dict:
        return {"archs": self.archs, "spearman": self.spearman, "spearman_ci": list(self.spearman_ci),
                "kendall": self.kendall, "kendall_ci": list(self.kendall_ci), "icc_proxy": self.icc_proxy,
                "icc_target": self.icc_target, "resamples": self.resamples}


def rank_agreement(proxy: Sequence[Sequence[float]], target: Sequence[Sequence[float]],
                   resamples: int = 2000, seed: int = 0) -> RankAgreement:
    """Rank correlation between the per-architecture mean accuracies at the two budgets, with
    bootstrap intervals, and the ICC at each budget. `proxy[i]` / `target[i]` are architecture
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
    rhos, taus = [], []
    n = len(pairs)
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        bp = [pairs[i][0][rng.integers(0, pairs[i][0].size, pairs[i][0].size)].mean() for i in idx]
        bt = [pairs[i][1][rng.integers(0, pairs[i][1].size, pairs[i][1].size)].mean() for i in idx]
        rhos.append(spearman(bp, bt))
        taus.append(kendall_tau(bp, bt))
    multi_t = sum(t.size >= 2 for _, t in pairs) >= 1
    return RankAgreement(
        archs=n, spearman=spearman(mp, mt), spearman_ci=bootstrap_ci(rhos), kendall=kendall_tau(mp, mt),
        kendall_ci=bootstrap_ci(taus), icc_proxy=icc_oneway([p for p, _ in pairs]),
        icc_target=icc_oneway([t for _, t in pairs]) if multi_t else None, resamples=resamples,
    )
