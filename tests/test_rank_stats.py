"""The fidelity statistics on rankings with known answers."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from lknas.study.rank_stats import (betainc, bootstrap_ci, f_cdf, f_ppf, icc_oneway, kendall_tau, rank_agreement,
                                    rankdata, runs_averaged, runs_for_icc, seed_tau, spearman, spearman_brown,
                                    tau_ceiling, tau_corrected)


def test_rankdata_averages_ties():
    assert rankdata([10, 20, 20, 30]).tolist() == [1, 2.5, 2.5, 4]
    assert rankdata([3, 1, 2]).tolist() == [3, 1, 2]


def test_spearman_known_values():
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(0.8207826816681233)  # scipy's doc example
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2, 3], [5, 5, 5]))


def test_kendall_known_values():
    assert kendall_tau([12, 2, 1, 12, 2], [1, 4, 7, 1, 0]) == pytest.approx(-0.47140452079103173)  # scipy's
    assert kendall_tau([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)  # one swapped pair of six


def test_seed_tau_averages_the_pairs_of_seeds():
    same = np.array([[1, 1, 1], [2, 2, 2], [3, 3, 3], [4, 4, 4]], dtype=float)
    assert seed_tau(same) == pytest.approx(1.0)
    flipped = same.copy()
    flipped[:, 1] = flipped[::-1, 1]  # seed 1 ranks backwards: pairs (0,1), (1,2) give -1, (0,2) +1
    assert seed_tau(flipped) == pytest.approx(-1 / 3)
    gaps = same[:, :2].copy()
    gaps[0, 1] = np.nan  # a pair uses the architectures it has both of
    assert seed_tau(gaps) == pytest.approx(1.0)
    assert np.isnan(seed_tau(same[:2]))  # fewer than 3 architectures: no ranking to compare


def test_averaging_runs_raises_the_agreement_a_noisy_proxy_reaches():
    rng = np.random.default_rng(1)
    truth = np.arange(30, dtype=float)
    table = truth[:, None] + rng.normal(0, 8, (30, 6))  # each run alone ranks poorly; their mean well
    runs = runs_averaged(table, truth)
    assert [r["runs"] for r in runs] == [1, 2, 3, 4, 5, 6]
    assert [r["subsets"] for r in runs] == [6, 15, 20, 15, 6, 1]  # every k-subset of the 6 seeds
    taus = [r["kendall"] for r in runs]
    assert all(a < b for a, b in zip(taus, taus[1:])) and taus[0] < 0.6 < taus[-1]
    assert runs[-1]["kendall"] == pytest.approx(kendall_tau(table.mean(axis=1), truth))
    assert runs[0]["kendall_min"] <= runs[0]["kendall"] <= runs[0]["kendall_max"]
    assert runs_averaged(table, truth, max_subsets=4)[2]["subsets"] == 4  # C(6,3) = 20 capped by a sample
    many = truth[:, None] + rng.normal(0, 8, (30, 60))  # C(60, 30) subsets: drawn, not enumerated
    assert [r["subsets"] for r in runs_averaged(many, truth, max_subsets=10)][29] == 10
    gap = table.copy()
    gap[0, 3] = np.nan  # an architecture missing a seed is left out
    assert runs_averaged(gap, truth)[-1]["kendall"] == pytest.approx(kendall_tau(table[1:].mean(axis=1), truth[1:]))
    assert runs_averaged(table[:2], truth[:2]) == []  # no ranking of 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a constant target has no tau: NaN, quietly
        assert all(math.isnan(r["kendall"]) for r in runs_averaged(table, np.ones(30)))


def test_spearman_brown_and_the_runs_an_icc_bar_needs():
    assert spearman_brown(0.5, 1) == pytest.approx(0.5)
    assert spearman_brown(0.5, 3) == pytest.approx(0.75)  # 3 runs of ICC 0.5: architectures 3x the noise
    assert spearman_brown(0.2, 4) == pytest.approx(0.5)
    assert runs_for_icc(0.5) == 3 and runs_for_icc(0.75) == 1 and runs_for_icc(0.9) == 1
    assert runs_for_icc(0.495) == 4 and runs_for_icc(0.2) == 12
    assert runs_for_icc(0.0) is None and runs_for_icc(-0.1) is None and runs_for_icc(float("nan")) is None
    assert math.isnan(spearman_brown(-0.1, 2))


def test_icc_shrout_fleiss_example():
    """Shrout & Fleiss (1979), 6 targets x 4 judges: ICC(1,1) = 0.17, ICC(1,4) = 0.44."""
    data = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    out = icc_oneway(data)
    assert out["icc"] == pytest.approx(0.17, abs=0.005)
    assert out["icc_mean"] == pytest.approx(0.44, abs=0.005)
    assert out["seed_share"] == pytest.approx(1 - out["icc"], abs=1e-9)  # balanced: the same thing


@pytest.mark.parametrize("q, d1, d2, table", [
    (0.95, 1, 1, 161.4476), (0.975, 1, 1, 647.7890), (0.95, 5, 10, 3.3258), (0.975, 10, 10, 3.7168),
    (0.95, 11, 12, 2.7173), (0.99, 3, 20, 4.9382),
])
def test_f_quantiles_match_the_tables(q, d1, d2, table):
    assert f_ppf(q, d1, d2) == pytest.approx(table, rel=1e-4)
    assert f_cdf(f_ppf(q, d1, d2), d1, d2) == pytest.approx(q, abs=1e-10)


def test_incomplete_beta_and_f_cdf_closed_forms():
    for x in (0.01, 0.3, 0.77, 0.999):
        assert betainc(2.5, 1.0, x) == pytest.approx(x ** 2.5, rel=1e-12)  # I_x(a, 1) = x^a
        assert betainc(1.0, 3.0, x) == pytest.approx(1 - (1 - x) ** 3, rel=1e-12)
    for x, d2 in ((0.2, 3), (3.0, 7), (40.0, 30)):  # 2 numerator degrees of freedom: 1 - (1 + 2x/d2)^(-d2/2)
        assert f_cdf(x, 2, d2) == pytest.approx(1 - (1 + 2 * x / d2) ** (-d2 / 2), rel=1e-12)
    assert f_ppf(0.95, 1, 10) == pytest.approx(2.2281389 ** 2, rel=1e-6)  # F(1, d) is t(d) squared
    assert f_ppf(0.05, 4, 9) == pytest.approx(1 / f_ppf(0.95, 9, 4), rel=1e-9)
    with pytest.raises(ValueError, match="quantile"):
        f_ppf(1.0, 2, 3)


def test_icc_interval_of_the_shrout_fleiss_example():
    """The exact intervals psych::ICC and pingouin print for the same data: [-0.13, 0.72], [-0.88, 0.91]."""
    data = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    out = icc_oneway(data)
    assert out["icc_ci"] == pytest.approx([-0.133, 0.723], abs=0.001)
    assert out["icc_mean_ci"] == pytest.approx([-0.884, 0.912], abs=0.001)


def test_icc_interval_covers_the_true_icc_95_percent_of_the_time():
    """12 architectures x 2 seeds, true ICC 0.6 (what a fidelity run measures): the interval holds
    it in 95% of 2000 simulated runs (binomial sd 0.5 points)."""
    rng = np.random.default_rng(1)
    var_arch, var_seed = 0.6, 0.4
    hits = 0
    for _ in range(2000):
        arch = rng.normal(0, math.sqrt(var_arch), 12)
        lo, hi = icc_oneway(arch[:, None] + rng.normal(0, math.sqrt(var_seed), (12, 2)))["icc_ci"]
        hits += lo <= 0.6 <= hi
    assert 0.93 <= hits / 2000 <= 0.97


def test_icc_separates_signal_from_noise():
    rng = np.random.default_rng(0)
    means = np.linspace(50, 90, 12)
    clear = [m + rng.normal(0, 0.5, 3) for m in means]
    noise = [70 + rng.normal(0, 5, 3) for _ in means]
    assert icc_oneway(clear)["icc"] > 0.99
    assert icc_oneway(noise)["icc"] < 0.3
    with pytest.raises(ValueError):
        icc_oneway([[1.0], [2.0]])  # no replicate: seed noise cannot be estimated


def test_unbalanced_groups_use_k0():
    out = icc_oneway([[1, 1.2], [5, 5.1, 4.9], [9]])
    assert out["k"] == pytest.approx((6 - 14 / 6) / 2) and out["icc"] > 0.95  # k0 = (N - sum n^2 / N) / (g - 1)


def test_rank_agreement_of_a_faithful_and_a_shuffled_proxy():
    rng = np.random.default_rng(1)
    target = [[m + rng.normal(0, 0.3) for _ in range(2)] for m in np.linspace(60, 90, 10)]
    faithful = [[m - 10 + rng.normal(0, 0.3) for _ in range(2)] for m in np.linspace(60, 90, 10)]
    out = rank_agreement(faithful, target, resamples=300)
    assert out.spearman > 0.95 and out.kendall > 0.85
    lo, hi = out.kendall_ci
    assert lo <= out.kendall <= hi and lo > 0.6
    shuffled = [faithful[i] for i in rng.permutation(10)]
    bad = rank_agreement(shuffled, target, resamples=300)
    assert bad.kendall_ci[0] < 0 < bad.kendall_ci[1] or abs(bad.kendall) < 0.5
    assert out.icc_proxy["icc"] > 0.95 and out.to_dict()["archs"] == 10


def test_rank_agreement_needs_three_archs():
    with pytest.raises(ValueError, match="at least 3"):
        rank_agreement([[1], [2]], [[1], [2]])


def test_bootstrap_ci_ignores_nan():
    assert bootstrap_ci([float("nan"), 1.0, 1.0]) == (1.0, 1.0)


def test_tau_ceiling_is_the_tau_a_noise_free_ranking_reaches_against_noisy_means():
    # Greiner's relation on simulated targets: true means N(0, 1), k seeds of noise sd 1.5 averaged
    rng = np.random.default_rng(0)
    k, sd = 2, 1.5
    reliability = 1 / (1 + sd ** 2 / k)
    taus = []
    for _ in range(300):
        true = rng.normal(0, 1, 40)
        taus.append(kendall_tau(true, true + rng.normal(0, sd, (k, 40)).mean(axis=0)))
    assert abs(np.mean(taus) - tau_ceiling(reliability)) < 0.015  # the mean's standard error is about 0.005
    assert tau_ceiling(1.0) == 1.0 and tau_ceiling(0.5) == pytest.approx(0.5)  # asin(sqrt(.5)) = pi / 4
    assert math.isnan(tau_ceiling(0.0)) and math.isnan(tau_ceiling(float("nan")))


@pytest.mark.parametrize("rho", [1.0, 0.6])
def test_tau_corrected_divides_the_seed_noise_out_and_keeps_a_bias(rho):
    # proxy and target see the same true means (rho 1: noise only) or partly other ones (rho 0.6: a
    # bias), each through its own seed noise; 3000 architectures make the estimate precise
    rng = np.random.default_rng(1)
    n, k = 3000, 2
    true = rng.normal(0, 1, n)
    seen = rho * true + math.sqrt(1 - rho ** 2) * rng.normal(0, 1, n)
    proxy = seen[:, None] + rng.normal(0, 1.0, (n, k))
    target = true[:, None] + rng.normal(0, 0.8, (n, k))
    rel_p, rel_t = icc_oneway(proxy)["icc_mean"], icc_oneway(target)["icc_mean"]
    tau = kendall_tau(proxy.mean(axis=1), target.mean(axis=1))
    assert tau < 2 / math.pi * math.asin(rho) - 0.1  # the noise hides part of the agreement
    assert tau_corrected(tau, rel_p, rel_t) == pytest.approx(2 / math.pi * math.asin(rho), abs=0.03)


def test_tau_corrected_is_capped_and_nan_without_reliability():
    assert tau_corrected(0.9, 0.3, 0.3) == 1.0 and tau_corrected(-0.9, 0.3, 0.3) == -1.0
    assert math.isnan(tau_corrected(0.5, 0.0, 0.8)) and math.isnan(tau_corrected(float("nan"), 0.5, 0.5))


def test_rank_agreement_reports_the_noise_ceiling_and_the_corrected_tau_with_intervals():
    rng = np.random.default_rng(2)
    true = rng.normal(0, 1, 30)
    target = [[m + rng.normal(0, 1.0) for _ in range(2)] for m in true]
    biased = [[0.5 * m + rng.normal(0, 0.9) + rng.normal(0, 0.3) for _ in range(2)] for m in true]
    out = rank_agreement(biased, target, resamples=400)
    d = out.to_dict()
    assert out.tau_ceiling == pytest.approx(tau_ceiling(out.icc_target["icc_mean"]))
    assert out.tau_corrected == pytest.approx(tau_corrected(out.kendall, out.icc_proxy["icc_mean"],
                                                            out.icc_target["icc_mean"]))
    for key in ("tau_ceiling", "tau_corrected"):
        lo, hi = d[f"{key}_ci"]
        assert lo <= d[key] <= hi and lo < hi
    assert out.kendall < out.tau_ceiling  # a noisy target caps any proxy's tau
    single = rank_agreement([[1.0, 1.2], [2.0, 2.1], [3.0, 2.9]], [[1.0], [2.0], [3.0]], resamples=10)
    assert single.icc_target is None and math.isnan(single.tau_ceiling)  # one target seed: no ceiling
