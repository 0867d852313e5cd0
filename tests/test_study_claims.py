"""Claim statistics on hand-made studies with known answers."""
from __future__ import annotations

import math

from pathlib import Path

import pandas as pd
import pytest

from lknas.study.claims import Contrast, contrast, point_stats, seed_sd, t_critical, verdict


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
    weights = {("with", "k13"): 1, ("without", "k13"): -1, ("with", "k3"): -1, ("without", "k3"): 1}
    c = contrast(df, weights, paired=False)
    assert c.estimate == pytest.approx(20.0 - 2.0) and c.seed_sd == pytest.approx(1.0) and c.paired_seeds == 0
    assert c.se == pytest.approx(math.sqrt(4 / 3)) and c.in_seed_sd == pytest.approx(18.0)
    assert verdict(c) == "reproduced" and verdict(c, direction=-1) == "not reproduced"
    with pytest.raises(KeyError, match="k99"):
        contrast(df, {("with", "k99"): 1})


def test_a_seed_that_is_hard_for_every_point_is_paired_out():
    """Seed 2 fails at both points (Pathfinder's late onsets): unpaired, its 30 points of spread
    swamp a 3-point effect; paired by seed, the effect is seen (2, 3 and 4 points per seed)."""
    df = study({("a", "k13"): [88.0, 90.0, 55.0], ("b", "k13"): [86.0, 87.0, 51.0]})
    unpaired = contrast(df, {("a", "k13"): 1, ("b", "k13"): -1}, paired=False)
    paired = contrast(df, {("a", "k13"): 1, ("b", "k13"): -1})
    assert unpaired.estimate == paired.estimate == pytest.approx(3.0) and paired.paired_seeds == 3
    assert paired.se == pytest.approx(1.0 / math.sqrt(3)) and unpaired.se > 10
    assert verdict(paired) == "reproduced" and verdict(unpaired) == "inconclusive"
    # points without two common seeds fall back to the pooled noise
    lone = study({("a", "k3"): [80.0, 81.0], ("b", "k3"): [70.0]})
    assert contrast(lone, {("a", "k3"): 1, ("b", "k3"): -1}).paired_seeds == 0


def test_few_seeds_need_more_standard_errors():
    assert t_critical(2) == pytest.approx(4.303) and t_critical(4) == pytest.approx(2.776)
    assert t_critical(11) == t_critical(10) and t_critical(1000) == 1.96 and math.isnan(t_critical(0))
    assert verdict(Contrast(3.0, 1.0, 2.0, 3, 2)) == "inconclusive"  # 3 paired seeds: 3 SE is not enough
    assert verdict(Contrast(3.0, 1.0, 2.0, 5, 4)) == "reproduced"


def test_an_effect_within_the_noise_is_inconclusive():
    assert verdict(Contrast(1.0, 0.8, 2.0)) == "inconclusive"
    assert verdict(Contrast(-3.0, 1.0, 2.0)) == "not reproduced"
    assert verdict(Contrast(2.0, 1.0, 2.0)) == "reproduced"
    assert verdict(Contrast(0.5, 0.0, 0.0)) == "reproduced"  # seeds agree exactly: any effect counts
    assert verdict(Contrast(5.0, float("nan"), float("nan"))) == "inconclusive"  # one seed: no noise estimate


ROOT = Path(__file__).resolve().parents[1]


def _script():
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("claims_script", ROOT / "experiments" / "claims.py")
    script = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = script
    spec.loader.exec_module(script)
    return script


def test_the_claims_script_reads_a_study_and_writes_its_verdict(tmp_path, monkeypatch):
    """experiments/claims.py on a made-up shortcut study where the claim holds by construction."""
    from lknas.study.experiment import load_experiment
    from lknas.study.points import expand

    script, root = _script(), ROOT
    points = expand(load_experiment(root / "experiments" / "shortcut.yaml"), count=lambda arch, res: 1.0)
    drop = {(True, 3): 0.0, (True, 13): 0.0, (False, 3): 2.0, (False, 13): 20.0}  # accuracy lost without it
    rows = [{"variant": p.variant, "point": p.point, "seed": s, "status": "ok", "arch_yaml": p.arch.to_yaml(),
             "accuracy": 80.0 + s - drop[(p.variant == "with_shortcut", p.arch.kernel_sizes[0])]}
            for p in points for s in range(3)]
    (tmp_path / "shortcut").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "shortcut" / "trials.csv", index=False)
    monkeypatch.setattr(script, "STUDIES", tmp_path)
    assert script.main(["shortcut"]) == 0
    text = (tmp_path / "shortcut" / "claim.md").read_text()
    assert "| with_shortcut | 3 | 81 +- 1 (3) |" in text and "| no_shortcut | 13 | 61 +- 1 (3) |" in text
    assert "| with_shortcut minus no_shortcut at kernel 13 | +20 | 0 (3 seeds) | +20.00 | reproduced |" in text
    assert "| the same at kernel 13 minus at kernel 3 (grows with the kernel) | +18 | 0 (3 seeds) | +18.00 | reproduced |" in text


def test_matched_flops_pairs_each_depth_and_width_point_with_its_kernel_point():
    from lknas.study.experiment import load_experiment
    from lknas.study.points import expand

    script = _script()
    points = expand(load_experiment(ROOT / "experiments" / "matched_flops.yaml"))
    df = pd.DataFrame([{"dimension": p.dimension, "point": p.point, "seed": s, "status": "ok",
                        "accuracy": (80.0 if p.dimension == "kernel" else 70.0) + s} for p in points for s in range(3)])
    rows = script._matched(df)
    matched = [p for p in points if p.dimension in ("depth", "width")]
    assert len(rows) == len(matched) + 1 and len(matched) >= 2
    for text, weights, sign in rows:
        assert sign == 1 and sum(weights.values()) == pytest.approx(0.0)
        assert contrast(df, weights, by=("dimension", "point")).estimate == pytest.approx(10.0), text


def test_peripheral_claim_treats_level_with_dense_as_a_claim_of_equality(tmp_path, monkeypatch):
    """Claim (c) on a made-up study: peripheral level with dense at 9 (within the noise), 10 points
    behind at 17 (not reproduced); the reversed grid 5 points behind everywhere (reproduced)."""
    from lknas.study.experiment import load_experiment
    from lknas.study.points import expand

    script = _script()
    points = expand(load_experiment(ROOT / "experiments" / "peripheral_claim.yaml"), count=lambda arch, res: 1.0)
    noise = {0: 0.5, 1: -0.5, 2: 0.0}  # per (seed, variant) jitter so a level gap has a standard error

    def acc(variant, k, s):
        lost = {"peripheral": {9: 0.0, 13: 5.0, 17: 10.0}[k], "reversed": {9: 5.0, 13: 10.0, 17: 15.0}[k]}
        return 80.0 + s - lost.get(variant, 0.0) + (noise[s] if variant == "peripheral" else 0.0)

    rows = [{"variant": p.variant, "point": p.point, "seed": s, "status": "ok", "arch_yaml": p.arch.to_yaml(),
             "accuracy": acc(p.variant, p.arch.kernel_sizes[0], s), "params": 1e5} for p in points for s in range(3)]
    (tmp_path / "peripheral_claim").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "peripheral_claim" / "trials.csv", index=False)
    monkeypatch.setattr(script, "STUDIES", tmp_path)
    assert script.main(["peripheral_claim"]) == 0
    text = (tmp_path / "peripheral_claim" / "claim.md").read_text()
    lines = {row.split(" | ")[0].lstrip("| "): row for row in text.splitlines() if row.startswith("| ")}
    assert "inconclusive: within the noise" in lines["peripheral minus dense at kernel 9 (PeLK: level, with a fraction of the kernel's parameters)"]
    assert lines["peripheral minus dense at kernel 17 (PeLK: level, with a fraction of the kernel's parameters)"].endswith("| not reproduced |")
    assert lines["peripheral minus reversed, mean over the kernels (PeLK: the reversed grid is worse)"].endswith("| reproduced |")
    assert "| scale_lr minus peripheral at kernel 17 (investigation) | +10 |" in text
    assert "| peripheral | 9 | 81 +- 0.87 (3) | 0.1M |" in text  # the params column, in millions
