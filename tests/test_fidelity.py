"""`lknas fidelity`: proxy vs target budget on sampled architectures, in the run format."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lknas.arch import ArchConfig, HeadSpec, KernelSpec, StageSpec, StemSpec
from lknas.study.fidelity import PROXY, TARGET, _target_train, fidelity_stats, format_fidelity, sample_archs


def _arch(k: int) -> str:
    stage = StageSpec(depth=1, width=8, kernel=KernelSpec(size=(k,), type="dense"), block="convnext",
                      mlp_ratio=2.0, downsample="none", layer_scale=1.0)
    return ArchConfig(stem=StemSpec("patch", 8), stages=(stage,), head=HeadSpec("ln")).to_yaml()


def _frame(target_of, noise: float = 0.5, seeds: int = 2) -> pd.DataFrame:
    """Six archs; kernel 3 or 13; proxy accuracy 50 + 5 i (+ 10 for kernel 13 from i = 3 on)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        k = 3 if i < 3 else 13
        proxy = 50 + 5 * i
        for budget, mean in ((PROXY, proxy), (TARGET, target_of(i, proxy))):
            for s in range(seeds):
                rows.append({"trial": len(rows), "status": "ok", "budget": budget, "point": f"a{i:02d}", "seed": s,
                             "accuracy": mean + rng.normal(0, noise), "arch_yaml": _arch(k), "resolution": 32,
                             "wall_time": 1.0 if budget == PROXY else 4.0})
    return pd.DataFrame(rows)


def test_a_faithful_proxy():
    stats = fidelity_stats(_frame(lambda i, p: p + 20))
    assert stats["spearman"] == pytest.approx(1.0) and stats["kendall"] == pytest.approx(1.0)
    assert stats["icc_proxy"]["icc"] > 0.95 and stats["icc_target"]["icc"] > 0.95
    assert stats["target_trial_seconds"] == 4.0
    effect = stats["kernel_effects"][0]
    assert effect["dimension"] == "stages[0].kernel" and effect["values"]["13"] > effect["values"]["3"]
    assert effect["range_over_seed_std"] > 10
    text = format_fidelity(stats)
    assert "Kendall tau 1.000" in text and "effect of stages[0].kernel" in text


def test_a_proxy_that_reverses_the_ranking():
    stats = fidelity_stats(_frame(lambda i, p: 100 - p))
    assert stats["spearman"] == pytest.approx(-1.0) and stats["kendall_ci"][1] < 0


def test_seed_noise_lowers_the_icc():
    stats = fidelity_stats(_frame(lambda i, p: p, noise=20.0, seeds=3))
    assert stats["icc_proxy"]["icc"] < 0.5


def test_no_budget_column_is_an_error():
    with pytest.raises(ValueError):
        fidelity_stats(pd.DataFrame([{"trial": 0, "status": "ok", "accuracy": 1.0}]))


def test_target_budget_defaults():
    from lknas.space.configs import TrainConfig

    assert _target_train(TrainConfig(epochs=10), 4, None, None) == {"epochs": 40}
    assert _target_train(TrainConfig(steps=300), 4, None, None) == {"steps": 1200}
    assert _target_train(TrainConfig(steps=300), 4, 7, None) == {"epochs": 7, "steps": None}


def test_sampled_architectures_are_distinct_and_feasible(tmp_path):
    from test_search import write_space

    from lknas.space import load_space

    space = load_space(write_space(tmp_path / "s.yaml", constraints="{resolution: 32, max_params: 20k}"))
    archs = sample_archs(space, 3, seed=1)
    assert len({a.hash() for a in archs}) == 3
    from lknas.measure.trial import measure_static

    assert all(measure_static(a, 32, num_classes=2)["params"] <= 20_000 for a in archs)


@pytest.mark.xdist_group("ray")
@pytest.mark.ray
def test_fidelity_run_end_to_end(local_ray, tmp_path, capsys):
    from test_search import write_space

    from lknas.cli import main
    from lknas.report import write_report
    from lknas.search import load_results

    space = write_space(tmp_path / "s.yaml")
    out = tmp_path / "fid"
    code = main(["fidelity", "--space", str(space), "--archs", "3", "--seeds", "2", "--factor", "2", "--out", str(out),
                 "--quiet"])
    assert code == 0
    df = load_results(out)
    assert len(df) == 12 and set(df["budget"]) == {PROXY, TARGET}
    assert set(df[df["budget"] == TARGET]["steps"]) == {4} and set(df[df["budget"] == PROXY]["steps"]) == {2}
    stats = json.loads((out / "fidelity.json").read_text())
    tau = stats["kendall"]  # NaN when 2 steps leave every architecture at the same accuracy (ties)
    assert stats["archs"] == 3 and (tau != tau or -1 <= tau <= 1) and "icc_proxy" in stats
    assert "fidelity of the proxy budget (2 steps vs 4 steps)" in capsys.readouterr().out
    result = write_report(out, png=False, erf=False)
    assert any(f.name == "fidelity" for f in result.figures)
    # the same --out continues (here: nothing left to run)
    assert main(["fidelity", "--out", str(out), "--quiet"]) == 0
    assert len(load_results(out)) == 12
