"""`lknas fidelity`: proxy vs target budget on sampled architectures, in the run format."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lknas.arch import ArchConfig, HeadSpec, KernelSpec, StageSpec, StemSpec
from lknas.errors import LknasError
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
    assert stats["seed_tau_proxy"] == pytest.approx(1.0) and stats["seed_tau_target"] == pytest.approx(1.0)
    text = format_fidelity(stats)
    assert "Kendall tau 1.000" in text and "effect of stages[0].kernel" in text
    assert "seed vs seed: Kendall tau 1.000 at the proxy, 1.000 at the target" in text
    lo, hi = stats["icc_proxy"]["icc_ci"]  # the ICC's exact interval, printed beside it
    assert 0.8 < lo < stats["icc_proxy"]["icc"] < hi <= 1.0
    assert f"proxy: ICC {stats['icc_proxy']['icc']:.3f} [{lo:.2f}, {hi:.2f}]" in text


def test_a_kernel_effect_the_target_erases_is_shown_beside_the_proxys():
    # the proxy favours kernel 13 by 15 points over kernel 3; at the target every net is at 90 +- noise
    stats = fidelity_stats(_frame(lambda i, p: 90.0, noise=0.3))
    effect = next(e for e in stats["kernel_effects"] if e["dimension"] == "stages[0].kernel")
    assert effect["values"]["13"] - effect["values"]["3"] > 10
    assert abs(effect["target_values"]["13"] - effect["target_values"]["3"]) < 1.0
    assert effect["target_range"] < 1.0 and effect["target_range_over_seed_std"] < 5
    text = format_fidelity(stats)
    assert "; at the target 3: 90." in text and "x its seed sd)" in text
    # a faithful proxy's effect survives: the same order at the target
    kept = fidelity_stats(_frame(lambda i, p: p + 20))["kernel_effects"][0]
    assert kept["target_values"]["13"] - kept["target_values"]["3"] == pytest.approx(
        kept["values"]["13"] - kept["values"]["3"], abs=1.0)


def test_the_kernel_effect_figure_draws_both_budgets_in_seed_sds():
    from lknas.report.fidelity_figure import kernel_effect_figure

    fig, why = kernel_effect_figure(fidelity_stats(_frame(lambda i, p: 90.0, noise=0.3)))
    assert why == "" and {t.name for t in fig.data} == {PROXY, TARGET}
    proxy = next(t for t in fig.data if t.name == PROXY)
    target = next(t for t in fig.data if t.name == TARGET)
    assert list(proxy.x) == ["3", "13"] and proxy.y[1] - proxy.y[0] > 10  # 15 points over a seed sd under 1
    assert abs(target.y[1] - target.y[0]) < 5  # the target's noise only
    assert proxy.customdata[0][1] == 3  # architectures per value, for the hover
    frame = _frame(lambda i, p: 90.0)  # the target with one seed: its seed sd is unknown
    one_target_seed = fidelity_stats(frame[(frame["budget"] == PROXY) | (frame["seed"] == 0)])
    fig, why = kernel_effect_figure(one_target_seed)
    assert fig is None and "seed sd is unknown" in why


def test_a_proxy_that_reverses_the_ranking():
    stats = fidelity_stats(_frame(lambda i, p: 100 - p))
    assert stats["spearman"] == pytest.approx(-1.0) and stats["kendall_ci"][1] < 0


def test_the_architectures_the_budgets_rank_differently_are_named_largest_move_first():
    # the target swaps the best and the worst proxy net and keeps the others' order
    frame = _frame(lambda i, p: {0: 100.0, 5: 0.0}.get(i, p), noise=0.1)
    frame["summary"] = frame["point"].map(lambda p: f"net {p}")
    stats = fidelity_stats(frame)
    moves = stats["rank_changes"]
    assert [(r["point"], r["proxy_rank"], r["target_rank"]) for r in moves[:2]] == [("a00", 6, 1), ("a05", 1, 6)]
    assert all(r["proxy_rank"] - r["target_rank"] in (-1, 0, 1) for r in moves[2:])
    assert moves[0]["summary"] == "net a00" and moves[0]["target"] == pytest.approx(100.0, abs=0.5)
    text = format_fidelity(stats)
    assert "largest rank changes (1 = best of 6): a00 (net a00) 6 at the proxy (50.0%), 1 at the target" in text
    assert "a05 (net a05) 1 at the proxy" in text and "a01" not in text.split("largest rank changes")[1]
    assert "largest rank changes" not in format_fidelity(fidelity_stats(_frame(lambda i, p: p + 20)))


def test_the_proxy_as_a_mean_of_runs_is_measured_per_number_of_runs():
    frame = _frame(lambda i, p: p, noise=6.0, seeds=4)
    frame = frame[(frame["budget"] == PROXY) | (frame["seed"] < 2)]  # 4 proxy seeds, 2 target seeds
    stats = fidelity_stats(frame)
    runs = stats["runs_averaged"]
    assert [r["runs"] for r in runs] == [1, 2, 3, 4] and runs[-1]["kendall"] == pytest.approx(stats["kendall"])
    icc = stats["icc_proxy"]["icc"]
    assert runs[0]["icc"] == pytest.approx(icc) and runs[2]["icc"] == pytest.approx(3 * icc / (1 + 2 * icc))
    assert stats["runs_for_icc"] >= 1
    text = format_fidelity(stats)
    assert f"the proxy as the mean of k runs: k=1 tau {runs[0]['kendall']:.2f} (ICC {icc:.2f})" in text
    assert f"ICC >= 0.75 needs {stats['runs_for_icc']} run" in text
    assert stats["runs_for_icc"] == 1 and "--trial-seeds" not in text  # one run already reaches the bar


def test_the_runs_a_noisy_proxy_needs_are_named_as_a_search_flag():
    frame = _frame(lambda i, p: p, noise=15.0, seeds=4)
    stats = fidelity_stats(frame[(frame["budget"] == PROXY) | (frame["seed"] < 2)])
    assert stats["runs_for_icc"] == 3
    assert "ICC >= 0.75 needs 3 runs per architecture (`lknas search --trial-seeds 3`)" in format_fidelity(stats)


def _two_budgets(proxy_means, target_means, noise: float, seeds: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = [{"trial": 0, "status": "ok", "budget": budget, "point": f"a{i:02d}", "seed": s,
             "accuracy": m + rng.normal(0, noise), "arch_yaml": _arch(3), "resolution": 32}
            for budget, means in ((PROXY, proxy_means), (TARGET, target_means))
            for i, m in enumerate(means) for s in range(seeds)]
    return pd.DataFrame(rows).assign(trial=lambda d: range(len(d)))


def test_noise_or_bias_names_a_biased_proxy_and_a_merely_noisy_one():
    from lknas.report.fidelity_figure import fidelity_figure

    true = np.linspace(60, 90, 20)
    biased = fidelity_stats(_two_budgets(true[np.r_[10:20, 0:10]], true, noise=0.2))  # half the order wrong
    assert biased["tau_ceiling"] > 0.95 and biased["tau_corrected"] < 0.5  # precise target, biased proxy
    text = format_fidelity(biased)
    assert f"a noise-free proxy would reach Kendall tau {biased['tau_ceiling']:.2f}" in text
    assert "below 1: part of the disagreement is a bias" in text
    frame = _two_budgets(true, true, noise=6.0, seeds=3)  # the same order, seeds 6 points apart
    noisy = fidelity_stats(frame)
    assert noisy["kendall"] < noisy["tau_ceiling"] < 0.95 and noisy["tau_corrected"] > 0.9
    assert noisy["kendall"] < noisy["tau_corrected"] and noisy["tau_corrected_ci"][1] == pytest.approx(1.0)
    fig = fidelity_figure(frame, noisy)
    assert f"Kendall tau a noise-free proxy could reach: {noisy['tau_ceiling']:.2f}" in fig.layout.title.text


def test_seed_noise_lowers_the_icc():
    stats = fidelity_stats(_frame(lambda i, p: p, noise=20.0, seeds=3))
    assert stats["icc_proxy"]["icc"] < 0.5 and stats["seed_tau_target"] < 0.9  # the seeds no longer agree
    assert stats["icc_proxy"]["icc_ci"][0] < 0.0  # 6 architectures cannot tell this ICC from none


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
    assert "fidelity_kernels" in {f.name for f in result.figures} | set(result.skipped)
    # the same --out continues (here: nothing left to run)
    assert main(["fidelity", "--out", str(out), "--quiet"]) == 0
    assert len(load_results(out)) == 12
    # another proxy budget against the same target: only the proxy half trains
    again = tmp_path / "fid-1step"
    code = main(["fidelity", "--space", str(space), "--archs", "3", "--seeds", "2", "--steps", "1", "--target-steps",
                 "4", "--target-from", str(out), "--out", str(again), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "reused 6 of 6 target trials" in printed
    assert "6 of 12 trials to run (3 architectures x 2 seeds x 2 budgets)" in printed
    df2 = load_results(again)
    assert len(df2) == 12 and set(df2[df2["budget"] == PROXY]["steps"]) == {1}
    target, reused = (d[d["budget"] == TARGET].sort_values("trial") for d in (df, df2))
    assert list(reused["accuracy"]) == list(target["accuracy"]) and list(reused["trial"]) == list(target["trial"])
    assert reused["reused_from"].str.startswith(str(out)).all()
    assert df2[df2["budget"] == PROXY]["reused_from"].isna().all()
    assert json.loads((again / "run.json").read_text())["target_from"] == str(out)


def test_target_from_refuses_a_directory_that_is_not_a_fidelity_run(tmp_path, capsys):
    from test_search import write_space

    from lknas.cli import main

    space = write_space(tmp_path / "s.yaml")
    source = tmp_path / "fid"
    source.mkdir()
    assert main(["fidelity", "--space", str(space), "--archs", "3", "--target-from", str(source),
                 "--out", str(tmp_path / "new")]) == 2
    assert "not a fidelity run directory" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def _fake_fidelity_run(root, jobs, settings, done=None, accuracy=lambda j: 50.0 + j.trial):
    """A fidelity run directory whose `done` jobs (default: all) finished with `accuracy(job)`."""
    import dataclasses

    from lknas.search.store import RunStore

    store = RunStore(root)
    store.root.mkdir()
    store.write_settings(settings)
    (store.root / "jobs.json").write_text(json.dumps([dataclasses.asdict(j) for j in jobs]))
    for j in jobs if done is None else done:
        store.append({**j.identity(), "status": "ok", "accuracy": accuracy(j)})
    return store


def test_target_from_reuses_only_exactly_matching_target_trials(tmp_path):
    from test_search import write_space

    from lknas.errors import LknasError
    from lknas.space import load_space
    from lknas.study.fidelity import _make_jobs, _reuse_trials, _settings

    space = load_space(write_space(tmp_path / "s.yaml"))
    archs = sample_archs(space, 3, 0)

    def plan(target_steps: int, proxy_steps: int = 2):
        proxy = space.train.replace(steps=proxy_steps)
        jobs = _make_jobs(archs, proxy, {"steps": target_steps}, 32, proxy.dataset, 2)
        return jobs, _settings(space, proxy, {"steps": target_steps}, jobs, 3, 2, 0, 2.0, None, None, None, None)

    jobs, settings = plan(4)
    done = [j for j in jobs if j.budget == TARGET][:2]
    source = _fake_fidelity_run(tmp_path / "src", jobs, settings, done, lambda j: 60.0 + j.trial)
    mine, my_settings = plan(4, proxy_steps=1)  # another proxy budget, the same target
    rows = _reuse_trials(source.root, mine, my_settings)
    assert [r["trial"] for r in rows] == [j.trial for j in done] and [r["accuracy"] for r in rows] == [
        60.0 + j.trial for j in done]
    other, other_settings = plan(5)  # a different target budget: nothing matches, refused
    with pytest.raises(LknasError, match="none of its finished target trials"):
        _reuse_trials(source.root, other, other_settings)


def test_reuse_from_takes_both_budgets_so_more_archs_train_only_the_new_jobs(tmp_path):
    from test_search import write_space

    from lknas.errors import LknasError
    from lknas.space import load_space
    from lknas.study.fidelity import _make_jobs, _reuse_trials, _settings

    space = load_space(write_space(tmp_path / "s.yaml"))

    def plan(n: int, seeds: int = 2, proxy_steps: int = 2):
        proxy = space.train.replace(steps=proxy_steps)
        jobs = _make_jobs(sample_archs(space, n, 0), proxy, {"steps": 4}, 32, proxy.dataset, seeds)
        return jobs, _settings(space, proxy, {"steps": 4}, jobs, n, seeds, 0, 2.0, None, None, None, None)

    jobs, settings = plan(3)
    source = _fake_fidelity_run(tmp_path / "src", jobs, settings)
    mine, my_settings = plan(4)  # one architecture more: its first 3 are the source's
    rows = _reuse_trials(source.root, mine, my_settings, (PROXY, TARGET), "--reuse-from")
    by_trial = {j.trial: j for j in mine}
    assert len(rows) == 12 and {by_trial[r["trial"]].point for r in rows} == {"a00", "a01", "a02"}
    assert {by_trial[r["trial"]].budget for r in rows} == {PROXY, TARGET}
    theirs = {(j.point, j.seed, j.budget): 50.0 + j.trial for j in jobs}
    assert all(r["accuracy"] == theirs[(by_trial[r["trial"]].point, by_trial[r["trial"]].seed,
                                        by_trial[r["trial"]].budget)] for r in rows)
    assert all(r["reused_from"].startswith(str(source.root)) for r in rows)
    more_seeds, seed_settings = plan(3, seeds=3)  # a third seed: the first two are reused
    assert len(_reuse_trials(source.root, more_seeds, seed_settings, (PROXY, TARGET), "--reuse-from")) == 12
    jobs1, settings1 = plan(3, proxy_steps=1)  # another proxy budget: only the target half matches
    assert {r["budget"] for r in _reuse_trials(source.root, jobs1, settings1, (PROXY, TARGET), "x")} == {TARGET}
    with pytest.raises(LknasError, match="--reuse-from .*not a fidelity run"):
        _reuse_trials(tmp_path, mine, my_settings, (PROXY, TARGET), "--reuse-from")


@pytest.mark.parametrize("seeds, target_seeds", [(4, 2), (2, 3)])  # fewer target runs, or a steadier target
def test_target_seeds_set_the_target_runs_apart_from_the_proxy_runs(tmp_path, seeds, target_seeds):
    from test_search import write_space

    from lknas.space import load_space
    from lknas.study.fidelity import _make_jobs

    space = load_space(write_space(tmp_path / "s.yaml"))
    proxy = space.train.replace(steps=2)
    jobs = _make_jobs(sample_archs(space, 3, 0), proxy, {"steps": 4}, 32, proxy.dataset, seeds,
                      target_seeds=target_seeds)
    found = {b: sorted({j.seed for j in jobs if j.budget == b}) for b in (PROXY, TARGET)}
    assert found == {PROXY: list(range(seeds)), TARGET: list(range(target_seeds))}
    assert len(jobs) == 3 * seeds + 3 * target_seeds


def test_one_target_seed_is_refused_naming_the_flag(tmp_path):
    from test_search import write_space

    from lknas.study.fidelity import run_fidelity

    with pytest.raises(LknasError, match="--target-seeds 1: give 2 or more"):
        run_fidelity(write_space(tmp_path / "s.yaml"), out=tmp_path / "run", archs=3, seeds=4, target_seeds=1)
    assert not (tmp_path / "run").exists()  # refused before anything is created


def test_one_target_seed_exits_2_on_the_command_line(tmp_path, capsys):
    from test_search import write_space

    from lknas.cli import main

    with pytest.raises(SystemExit) as exc:  # refused by the argument parser
        main(["fidelity", "--space", str(write_space(tmp_path / "s.yaml")), "--archs", "3", "--seeds", "3",
              "--target-seeds", "1", "--out", str(tmp_path / "new")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--target-seeds: must be an integer from 2" in err and "Traceback" not in err
    assert not (tmp_path / "new").exists()


def test_reuse_from_reads_trials_jsonl_files_by_what_each_row_records(tmp_path):
    from test_search import write_space

    from lknas.errors import LknasError
    from lknas.search.trial import train_record
    from lknas.space import load_space
    from lknas.study.fidelity import _make_jobs, _reuse_trials, _settings
    from lknas.study.runner import job_train_config

    space = load_space(write_space(tmp_path / "s.yaml"))

    def plan(n: int, proxy_steps: int = 2):
        proxy = space.train.replace(steps=proxy_steps)
        jobs = _make_jobs(sample_archs(space, n, 0), proxy, {"steps": 4}, 32, proxy.dataset, 2)
        return jobs, _settings(space, proxy, {"steps": 4}, jobs, n, 2, 0, 2.0, None, None, None, None)

    def row(job, settings, accuracy, **extra):  # as a trial writes it: the layout `auto` resolved to
        train = {**train_record(job_train_config(settings["train"], job)), "layout": "channels_last"}
        return {**job.identity(), "status": "ok", "accuracy": accuracy, "arch_yaml": job.arch_yaml, "train": train,
                **extra}

    jobs, settings = plan(3)
    committed = tmp_path / "proxy_trials.jsonl"  # e.g. results/benchmarks/*_trials.jsonl
    lines = [row(j, settings, 50.0 + j.trial) for j in jobs if j.budget == PROXY]
    lines.append({**lines[0], "train": None, "trial": 99})  # no train recorded: not reusable
    committed.write_text("".join(json.dumps(r) + "\n" for r in lines) + "not json\n")
    more = tmp_path / "target_trials.jsonl"
    more.write_text("".join(json.dumps(row(j, settings, 80.0)) + "\n" for j in jobs))
    mine, my_settings = plan(4)
    by_trial = {j.trial: j for j in mine}
    with pytest.warns(Warning, match="not trial records"):
        rows = _reuse_trials([committed], mine, my_settings, (PROXY, TARGET), "--reuse-from")
    assert len(rows) == 6 and {by_trial[r["trial"]].budget for r in rows} == {PROXY}
    assert all(r["reused_from"].startswith(str(committed)) for r in rows)
    with pytest.warns(Warning):
        both = _reuse_trials([committed, more], mine, my_settings, (PROXY, TARGET), "--reuse-from")
    assert len(both) == 12  # the proxy half from the first file (it wins), the target half from the second
    assert sorted(r["accuracy"] for r in both if by_trial[r["trial"]].budget == PROXY) == sorted(
        r["accuracy"] for r in rows)
    assert {r["accuracy"] for r in both if by_trial[r["trial"]].budget == TARGET} == {80.0}
    other, other_settings = plan(3, proxy_steps=1)  # another proxy budget: the proxy file matches nothing
    with pytest.warns(Warning), pytest.raises(LknasError, match="proxy_trials.jsonl: none of its finished"):
        _reuse_trials([more, committed], other, other_settings, (PROXY, TARGET), "--reuse-from")


def test_rows_from_before_a_setting_existed_match_it_at_its_off_default():
    """A trials file written before `train.zero_init_last` (or `curriculum_ramp`) existed records no such
    key: its rows are the same experiment as a job with the setting off, and not as one with it on."""
    from lknas.study.fidelity import OFF_BY_DEFAULT, _identity

    old_row = {"steps": 800, "lr": 0.003, "seed": 1, "layout": "channels_last"}
    assert OFF_BY_DEFAULT == {"zero_init_last": False, "curriculum_ramp": False}
    for key in OFF_BY_DEFAULT:
        assert _identity("arch", {**old_row, key: False}) == _identity("arch", old_row)
        assert _identity("arch", {**old_row, key: True}) != _identity("arch", old_row)


def test_reuse_from_is_repeatable_on_the_command_line():
    from lknas.cli import build_parser

    args = build_parser().parse_args(["fidelity", "--space", "s.yaml", "--reuse-from", "a.jsonl", "--reuse-from", "b"])
    assert args.reuse_from == ["a.jsonl", "b"]


def test_proxy_set_changes_the_proxy_recipe_only_so_the_target_is_reused(tmp_path):
    from test_search import write_space

    from lknas.space import load_space
    from lknas.study.fidelity import _make_jobs, _reuse_trials, _settings, parse_proxy_set
    from lknas.study.runner import job_train_config

    space = load_space(write_space(tmp_path / "s.yaml"))
    archs = sample_archs(space, 3, 0)

    def plan(recipe=None):
        proxy = space.train.replace(steps=2)
        jobs = _make_jobs(archs, proxy, {"steps": 4}, 32, proxy.dataset, 2, recipe)
        return jobs, _settings(space, proxy, {"steps": 4}, jobs, 3, 2, 0, 2.0, None, None, None, None)

    recipe = parse_proxy_set(["warmup_epochs=0.1", "lr = 1e-3"])
    assert recipe == {"warmup_epochs": 0.1, "lr": 0.001}
    jobs, settings = plan(recipe)
    for j in jobs:
        cfg = job_train_config(settings["train"], j)
        if j.budget == PROXY:
            assert (cfg.warmup_epochs, cfg.lr, cfg.steps) == (0.1, 0.001, 2)
        else:  # the target keeps the space's recipe
            assert (cfg.warmup_epochs, cfg.lr, cfg.steps) == (space.train.warmup_epochs, space.train.lr, 4)
    source = _fake_fidelity_run(tmp_path / "src", *plan())
    rows = _reuse_trials(source.root, jobs, settings, (PROXY, TARGET), "--reuse-from")
    assert len(rows) == 6 and {j.budget for j in jobs if j.trial in {r["trial"] for r in rows}} == {TARGET}


def test_target_set_changes_the_target_recipe_only_so_old_target_trials_are_reused(tmp_path):
    from test_search import write_space

    from lknas.space import load_space
    from lknas.study.fidelity import _make_jobs, _reuse_trials, _settings, parse_proxy_set
    from lknas.study.runner import job_train_config

    space = load_space(write_space(tmp_path / "s.yaml"))
    archs = sample_archs(space, 3, 0)
    old_lr = float(space.train.lr)

    def plan(proxy_train, target_recipe=None):
        jobs = _make_jobs(archs, proxy_train, {"steps": 4}, 32, proxy_train.dataset, 2, None, target_recipe)
        return jobs, _settings(space, proxy_train, {"steps": 4}, jobs, 3, 2, 0, 2.0, None, None, None, None)

    # an earlier measurement, made when the space's lr was old_lr; the space's lr has changed since
    source = _fake_fidelity_run(tmp_path / "src", *plan(space.train.replace(steps=2)))
    changed = space.train.replace(steps=2, lr=old_lr / 2)
    jobs, settings = plan(changed)
    with pytest.raises(LknasError, match="none of its finished"):
        _reuse_trials(source.root, jobs, settings, (PROXY, TARGET), "--reuse-from")
    recipe = parse_proxy_set([f"lr={old_lr}"], "--target-set")
    jobs, settings = plan(changed, recipe)
    for j in jobs:
        cfg = job_train_config(settings["train"], j)
        assert (cfg.lr, cfg.steps) == ((old_lr / 2, 2) if j.budget == PROXY else (old_lr, 4))
    rows = _reuse_trials(source.root, jobs, settings, (PROXY, TARGET), "--reuse-from")
    assert len(rows) == 6 and {j.budget for j in jobs if j.trial in {r["trial"] for r in rows}} == {TARGET}


@pytest.mark.parametrize("flag, key, message", [
    ("--target-set", "steps", "set it with --target-steps"),
    ("--target-set", "dataset", "set it with --target-data"),
    ("--target-set", "resolution", "set it with --target-resolution"),
    ("--proxy-set", "resolution", "set it with the space's train"),
])
def test_each_half_points_to_its_own_budget_and_data_flags(flag, key, message):
    from lknas.study.fidelity import parse_proxy_set

    with pytest.raises(LknasError, match=f"{flag} {key}: {message}"):
        parse_proxy_set([f"{key}=1"], flag)


@pytest.mark.parametrize("item, message", [
    ("steps=10", "set it with --steps"),
    ("warmup=0.1", "warmup_epochs"),
    ("lr=-1", "lr"),
    ("lr", "give KEY=VALUE"),
    ("lr={choice: [0.001, 0.002]}", "one value here"),
])
def test_proxy_set_refuses_bad_items_naming_them(item, message):
    from lknas.errors import LknasError
    from lknas.study.fidelity import parse_proxy_set

    with pytest.raises(LknasError, match=message):
        parse_proxy_set([item])


def test_bad_proxy_set_exits_2_before_anything_is_created(tmp_path, capsys):
    from test_search import write_space

    from lknas.cli import main

    space = write_space(tmp_path / "s.yaml")
    code = main(["fidelity", "--space", str(space), "--archs", "3", "--proxy-set", "batch_size=0",
                 "--out", str(tmp_path / "new")])
    err = capsys.readouterr().err
    assert code == 2 and "--proxy-set batch_size" in err and "Traceback" not in err
    assert not (tmp_path / "new").exists()


def test_reuse_from_and_target_from_are_one_or_the_other(tmp_path, capsys):
    from test_search import write_space

    from lknas.cli import main

    space = write_space(tmp_path / "s.yaml")
    code = main(["fidelity", "--space", str(space), "--archs", "3", "--target-from", str(tmp_path),
                 "--reuse-from", str(tmp_path), "--out", str(tmp_path / "new")])
    assert code == 2 and "give one" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
