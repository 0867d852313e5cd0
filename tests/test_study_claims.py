"""Claim statistics on hand-made studies with known answers."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from lknas.study.claims import Contrast, contrast, point_stats, seed_sd, verdict


def study(values: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    rows = [{"variant": v, "point": p, "seed": s, "accuracy": a, "status": "ok"}
            for (v, p), accs in values.items() for s, a in enumerate(accs)]
    rows.append({"variant": "a", "point": "k3", "seed": 9, "accuracy": 0.0, "status": "error"})  # not counted
    return pd.DataFrame(rows)


def test_point_means_and_the_pooled_seed_sd():
    df = study({("a", "k3"): [70.0, 72.0, 74.0], ("a", "k13"): [80.0, 84.0], ("b", "k3"): [60.0]})
    stats = point_stats(df).set_index(["variant", "point"])
    assert stats.loc[("a", "k3"), "mean"] == 72.0 and stats.loc[("a", "k3"), "n"] == 3
    assert stats.loc[("a", "k3"), "std"] == pytest.approx(2.0) and math.isnan(stats.loc[("b", "k3"), "std"])
    # (2 * 2^2 + 1 * 2.828^2) / 3 = (8 + 8) / 3
    assert seed_sd(df) == pytest.approx(math.sqrt(16 / 3))


def test_an_interaction_contrast_and_its_standard_error():
    df = study({("with", "k3"): [70.0, 71.0, 72.0], ("without", "k3"): [68.0, 69.0, 70.0],
                ("with", "k13"): [80.0, 81.0, 82.0], ("without", "k13"): [60.0, 61.0, 62.0]})
    c = contrast(df, {("with", "k13"): 1, ("without", "k13"): -1, ("with", "k3"): -1, ("without", "k3"): 1})
    assert c.estimate == pytest.approx(20.0 - 2.0) and c.seed_sd == pytest.approx(1.0)
    assert c.se == pytest.approx(math.sqrt(4 / 3)) and c.in_seed_sd == pytest.approx(18.0)
    assert verdict(c) == "reproduced" and verdict(c, direction=-1) == "not reproduced"
    with pytest.raises(KeyError, match="k99"):
        contrast(df, {("with", "k99"): 1})


def test_an_effect_within_the_noise_is_inconclusive():
    assert verdict(Contrast(1.0, 0.8, 2.0)) == "inconclusive"
    assert verdict(Contrast(-3.0, 1.0, 2.0)) == "not reproduced"
    assert verdict(Contrast(2.0, 1.0, 2.0)) == "reproduced"
    assert verdict(Contrast(0.5, 0.0, 0.0)) == "reproduced"  # seeds agree exactly: any effect counts
    assert verdict(Contrast(5.0, float("nan"), float("nan"))) == "inconclusive"  # one seed: no noise estimate
