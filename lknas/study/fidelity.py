"""`lknas fidelity --space SPACE.yaml`: does the proxy budget rank architectures as a larger one does?

`archs` architectures are sampled from the space (seeded, distinct, within its constraints) and
each is trained with `seeds` seeds at two budgets: the *proxy* budget (the space's `train`
section, exactly as a search trains) and a *target* budget (by default `factor` times the steps or
epochs; a resolution or data set of its own may be given too). The trials run on Ray Tune through
the scaling-study runner, so they land in the run format (`trials.jsonl`, `trials.csv`, with
`budget`, `point` = the architecture, `seed`) and `lknas report` draws them.

Then `fidelity_stats` measures (`lknas.study.rank_stats`): Spearman's rho and Kendall's tau
between the proxy and target mean accuracies with bootstrap intervals; the ICC at each budget
(architecture variance against seed variance); per searched kernel dimension, the spread of
the mean accuracy across its values against the seed noise, at both budgets; and the architectures
whose rank moves most between the budgets. It writes `fidelity.json` and a summary; re-running
with the same `--out` continues an interrupted run.

Several proxy budgets are best compared against one target, the expensive half: a new run with
`target_from=RUN` (`--target-from RUN`) copies RUN's finished target trials that are exactly its
own target jobs (same architecture, seed, data set, resolution and training settings), marked
`reused_from`, and trains only the rest. `reuse_from=RUN` (`--reuse-from RUN`) does the same for
trials of both budgets: more architectures (`--archs 12` after 6: the sample's first 6 are the
same) or seeds than RUN measured, training only the new jobs. It also takes trials JSONL files
(each row records its `arch_yaml` and `train`), and several sources.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lknas.errors import LknasError
from lknas.io import write_json_atomic, write_text_atomic
from lknas.limits import MAX_TRIAL_SEEDS
from lknas.search.store import RunStore, read_records
from lknas.space import SearchSpace, load_space
from lknas.space.configs import TrainConfig
from lknas.status import TrialStatus
from lknas.study.rank_stats import rank_agreement, rankdata, runs_averaged, runs_for_icc, seed_tau, spearman_brown
from lknas.study.runner import Job, _read_jobs, _run_jobs, job_train_config

__all__ = ["run_fidelity", "fidelity_stats", "sample_archs", "format_fidelity", "PROXY", "TARGET"]

PROXY, TARGET = "proxy", "target"
MAX_SAMPLE_TRIES = 50  # draws per wanted architecture before giving up (infeasible or duplicate)


def sample_archs(space: SearchSpace, n: int, seed: int = 0, num_classes: int = 2, in_chans: int = 3) -> list:
    """`n` distinct architectures of `space` within its constraints, drawn with seeds seed*10^6 + i."""
    from lknas.measure.trial import measure_static
    from lknas.search.objectives import effective_counts

    archs, seen = [], set()
    for i in range(n * MAX_SAMPLE_TRIES):
        arch = space.sample(seed * 10**6 + i)
        if arch.hash() in seen:
            continue
        seen.add(arch.hash())
        c = space.constraints
        if any(v is not None for v in (c.max_params, c.min_params, c.max_flops, c.min_flops)):
            counts = effective_counts(measure_static(arch, c.resolution, num_classes, in_chans))
            if c.violations(counts["params_effective"], counts["flops_effective"]):
                continue
        archs.append(arch)
        if len(archs) == n:
            return archs
    raise LknasError(f"{space.file}: found only {len(archs)} distinct architectures within the constraints "
                     f"in {n * MAX_SAMPLE_TRIES} draws; ask for fewer (--archs) or relax the constraints")


def _target_train(proxy: TrainConfig, factor: float, epochs: int | None, steps: int | None) -> dict[str, Any]:
    if steps is not None:
        return {"steps": steps}
    if epochs is not None:
        return {"epochs": epochs, "steps": None}
    if proxy.steps:
        return {"steps": int(round(proxy.steps * factor))}
    return {"epochs": int(round(proxy.epochs * factor))}


def _budget_text(train: dict[str, Any]) -> str:
    return f"{train['steps']} steps" if train.get("steps") else f"{train['epochs']} epochs"


def run_fidelity(
    space: str | os.PathLike | None = None,
    *,
    out: str | os.PathLike | None = None,
    archs: int = 12,
    seeds: int = 2,
    target_seeds: int | None = None,
    sample_seed: int = 0,
    factor: float = 4.0,
    epochs: int | None = None,
    steps: int | None = None,
    dataset: str | None = None,
    target_epochs: int | None = None,
    target_steps: int | None = None,
    target_resolution: int | None = None,
    target_dataset: str | None = None,
    proxy_set: dict[str, Any] | list[str] | None = None,
    target_set: dict[str, Any] | list[str] | None = None,
    target_from: str | os.PathLike | None = None,
    reuse_from: str | os.PathLike | list[str | os.PathLike] | None = None,
    address: str | None = None,
    cpus_per_trial: float | None = None,
    gpus_per_trial: float | None = None,
    max_concurrent: int | None = None,
    quiet: bool = False,
    stream=None,
) -> dict[str, Any]:
    """Run (or continue, with the same `out`) a fidelity measurement; returns the statistics.

    Args:
        space: the search space (a bare name resolves to search_spaces/).
        archs, seeds: architectures sampled, seeds per architecture and budget (>= 2: the ICC
            needs repeats).
        target_seeds: seeds per architecture at the target budget only (2 or more; default
            `seeds`): more proxy seeds than target ones, to see how many averaged proxy runs rank
            like the target (`runs_averaged`) without paying for the expensive half again; more
            target seeds than proxy ones, a steadier target to check a proxy against when the
            target's own seeds disagree (see `tau_ceiling`).
        factor: target budget = factor x the proxy's steps (or epochs) unless target_epochs /
            target_steps are given. epochs / steps / dataset override the proxy budget.
        target_resolution, target_dataset: the target's input size and data set (default: the
            proxy's), e.g. 'pathfinder:length=5,train=40000' for more data.
        proxy_set: train settings of the proxy half only ({'warmup_epochs': 0.1} or
            ['warmup_epochs=0.1']): another proxy recipe against the same target.
        target_set: train settings of the target half only, the same way (a target trained with
            another recipe than the space's, e.g. the one earlier target trials were trained with).
        target_from: a finished fidelity run whose target trials this new run reuses where they
            are exactly its own target jobs (another proxy budget against the same target).
        reuse_from: fidelity runs or trials JSONL files (one or a list) whose finished trials of
            either budget are reused where they are exactly this run's jobs (more architectures or
            seeds than they measured: only the new jobs train).
    Raises:
        LknasError: bad arguments, a space without enough feasible architectures.
    """
    from lknas.search.env_check import check_environment

    check_environment()  # LKNAS_* values every trial reads: refused here, not in each trial
    stream = stream or sys.stdout
    if isinstance(reuse_from, (str, os.PathLike)):
        reuse_from = [reuse_from]
    reuse_from = [Path(r) for r in reuse_from] if reuse_from else None
    new = out is None or not (Path(out) / "jobs.json").is_file()
    for flag, source in (("--target-from", target_from), ("--reuse-from", reuse_from)):
        if source is not None and not new:
            raise LknasError(f"{flag} {_sources_text(source)}: applies to a new measurement; {out} is one to continue "
                             f"(drop {flag}, or give another --out)")
    if target_from is not None and reuse_from is not None:
        raise LknasError("--target-from and --reuse-from: give one (--reuse-from also reuses the target trials)")
    if new:
        if space is None:
            raise LknasError("give a space (--space SPACE.yaml), or --out of a fidelity run to continue")
        if archs < 3:
            raise LknasError(f"--archs {archs}: rank correlations need at least 3 architectures")
        if seeds < 2:
            raise LknasError(f"--seeds {seeds}: the seed noise (ICC) needs at least 2 seeds")
        target_seeds = seeds if target_seeds is None else target_seeds
        if target_seeds < 2:
            raise LknasError(f"--target-seeds {target_seeds}: give 2 or more target seeds per architecture "
                             f"(the target's ICC needs 2)")
        if factor <= 0 or not math.isfinite(factor):
            raise LknasError(f"--factor {factor}: must be a positive number, e.g. 4")
        space_obj = load_space(space)
        proxy = space_obj.train if space_obj.train.is_fixed else space_obj.sample_train(0)
        proxy = proxy.replace(**{k: v for k, v in (("epochs", epochs), ("steps", steps), ("dataset", dataset))
                                 if v is not None})
        target = _target_train(proxy, factor, target_epochs, target_steps)
        recipe = parse_proxy_set(proxy_set)
        target_recipe = parse_proxy_set(target_set, "--target-set")
        jobs = _make_jobs(sample_archs(space_obj, archs, sample_seed), proxy, target,
                          target_resolution or proxy.resolution, target_dataset or proxy.dataset, seeds, recipe,
                          target_recipe, target_seeds)
        settings = _settings(space_obj, proxy, target, jobs, archs, seeds, sample_seed, factor, address,
                             cpus_per_trial, gpus_per_trial, max_concurrent)
        if target_seeds != seeds:
            settings["target_seeds"] = list(range(target_seeds))
        if recipe:
            settings["proxy_set"] = recipe
        if target_recipe:
            settings["target_set"] = target_recipe
        reused = []
        if target_from is not None:
            reused = _reuse_trials(Path(target_from), jobs, settings)
            settings["target_from"] = str(target_from)
        if reuse_from is not None:
            reused = _reuse_trials(reuse_from, jobs, settings, (PROXY, TARGET), "--reuse-from")
            settings["reuse_from"] = [str(r) for r in reuse_from]
    store = RunStore(out or Path("results") / f"fidelity-{space_obj.name}-{dt.datetime.now():%Y%m%d-%H%M%S}")
    with store.hold("fidelity"):  # one writer per run directory
        if not new:
            store.repair_tail()
            settings = store.read_settings()
            jobs = _read_jobs(store.root / "jobs.json")
            print(f"continuing the fidelity run in {store.root}", file=stream)
        else:
            if store.trials_jsonl.exists():
                raise LknasError(f"{store.root} already holds trials but no jobs.json; choose another --out")
            shutil.copyfile(space_obj.file, store.root / "space.yaml")
            store.write_settings(settings)
            write_json_atomic(store.root / "jobs.json", [dataclasses.asdict(j) for j in jobs])
            for row in reused:
                store.append(row)
            if target_from is not None:
                print(f"reused {len(reused)} of {sum(j.budget == TARGET for j in jobs)} target trials from "
                      f"{target_from}", file=stream)
            if reuse_from is not None:
                print(f"reused {len(reused)} of {len(jobs)} trials from {_sources_text(reuse_from)}", file=stream)
            print(f"lknas fidelity: {archs} architectures of {space_obj.name} x {seeds} seeds at the proxy budget "
                  f"({_budget_text(settings['train'])}{_recipe_text(settings)}) and the target budget "
                  f"({_budget_text(target)}{_recipe_text(settings, 'target_set')}"
                  f"{f'; {target_seeds} seeds' if target_seeds != seeds else ''})", file=stream)
        outcome = _run_jobs(store, settings, jobs, erf=False, quiet=quiet, stream=stream)
        try:
            stats = fidelity_stats(store.frame())
        except ValueError as err:
            stats = {"error": str(err)}
        write_json_atomic(store.root / "fidelity.json", stats)
        text = format_fidelity(stats, settings)
        summary = store.root / "summary.txt"
        write_text_atomic(summary, (summary.read_text() if summary.is_file() else "") + "\n" + text)
    print(text, file=stream)
    if outcome.interrupted:
        print(f"continue with: python -m lknas fidelity --out {store.root}", file=stream)
    stats["run_dir"], stats["interrupted"] = str(store.root), outcome.interrupted
    return stats


def _recipe_text(settings: dict[str, Any], key: str = "proxy_set") -> str:
    return "".join(f", {k}={v}" for k, v in settings.get(key, {}).items())


def _sources_text(sources) -> str:
    return ", ".join(map(str, sources)) if isinstance(sources, list) else str(sources)


def _settings(space: SearchSpace, proxy: TrainConfig, target: dict[str, Any], jobs: list[Job], archs: int,
              seeds: int, sample_seed: int, factor: float, address, cpus_per_trial, gpus_per_trial,
              max_concurrent) -> dict[str, Any]:
    run = {k: v for k, v in (("cpus_per_trial", cpus_per_trial), ("gpus_per_trial", gpus_per_trial),
                             ("max_concurrent", max_concurrent)) if v is not None}
    base = proxy.to_dict()
    return {
        "kind": "fidelity", "space": str(space.file), "name": f"fidelity-{space.name}", "space_name": space.name,
        "search": {"objectives": [{"name": "accuracy", "mode": "max"}, {"name": "latency", "mode": "min"}],
                   "trials": len(jobs), "sampler": "random", **run},
        "train": base, "budgets": {PROXY: {k: base[k] for k in ("epochs", "steps")}, TARGET: target},
        "datasets": sorted({j.dataset for j in jobs}), "seeds": list(range(seeds)), "archs": archs,
        "sample_seed": sample_seed, "factor": factor, "points": archs, "address": address,
        "created": dt.datetime.now().isoformat(timespec="seconds"),
    }


def _fingerprint(train: dict[str, Any], job: Job) -> str:
    """What makes two trials the same experiment: architecture, seed, data, resolution, training."""
    return _identity(job.arch_yaml, job_train_config(train, job).to_dict())


# Train settings added after trials were shipped whose default is the behaviour before them: at
# that value a setting counts as absent, so the older rows, which do not record it, still match.
OFF_BY_DEFAULT = {"zero_init_last": False, "curriculum_ramp": False}


def _identity(arch_yaml: str, train: dict[str, Any]) -> str:
    """The fingerprint of an architecture trained with `train` (a TrainConfig's dict, or the `train`
    a trial's row records). The memory layout is left out: it changes rounding, not the experiment,
    and a row records the layout `auto` resolved to; so are settings at their OFF_BY_DEFAULT value."""
    kept = {k: v for k, v in train.items()
            if v is not None and k != "layout" and not (k in OFF_BY_DEFAULT and v == OFF_BY_DEFAULT[k])}
    return json.dumps([arch_yaml, kept], sort_keys=True, default=str)


def _finished(source: Path, flag: str) -> dict[str, dict[str, Any]]:
    """The finished trials (status ok or diverged) in `source`, by fingerprint, marked `reused_from`.

    `source` is a fidelity run directory (each trial identified by its job there) or a trials
    JSONL file such as results/benchmarks/*_trials.jsonl (by the `arch_yaml` and `train` each row
    records; rows without them are skipped)."""
    if source.is_file() and source.suffix == ".jsonl":
        rows = read_records(source)
        keyed = [(_identity(r["arch_yaml"], r["train"]), r) for r in rows
                 if isinstance(r.get("arch_yaml"), str) and isinstance(r.get("train"), dict)]
    else:
        store = RunStore(source)
        if not (source / "jobs.json").is_file() or not store.settings_file.is_file():
            raise LknasError(f"{flag} {source}: not a fidelity run directory (no jobs.json / "
                             f"{store.settings_file.name}) nor a trials .jsonl file; give the --out of an "
                             "earlier `lknas fidelity` or its trials.jsonl")
        theirs = store.read_settings()
        if theirs.get("kind") != "fidelity":
            raise LknasError(f"{flag} {source}: a {theirs.get('kind', 'search')} run, not a fidelity run")
        their_jobs = {j.trial: j for j in _read_jobs(source / "jobs.json")}
        keyed = [(_fingerprint(theirs["train"], their_jobs[r["trial"]]), r) for r in store.rows()
                 if r.get("trial") in their_jobs]
    done: dict[str, dict[str, Any]] = {}
    for fp, row in keyed:
        if row.get("status") in (TrialStatus.OK, TrialStatus.DIVERGED):
            done.setdefault(fp, {**row, "reused_from": f"{source} trial {row['trial']}"})
    return done


def _reuse_trials(sources: Path | list[Path], jobs: list[Job], settings: dict[str, Any],
                  budgets: tuple[str, ...] = (TARGET,), flag: str = "--target-from") -> list[dict[str, Any]]:
    """The finished trials in `sources` (fidelity run directories or trials JSONL files, the first
    one holding a trial wins) that are exactly jobs of this run of the given `budgets` (whose train
    settings are `settings['train']`), renumbered as those jobs and marked `reused_from`.

    Raises:
        LknasError: a source is not a fidelity run or trials file, or none of its trials matches.
    """
    wanted = [(j, _fingerprint(settings["train"], j)) for j in jobs if j.budget in budgets]
    done: dict[str, dict[str, Any]] = {}
    for source in [sources] if isinstance(sources, Path) else sources:
        theirs = _finished(source, flag)
        if not any(fp in theirs for _, fp in wanted):
            what = "target trials" if budgets == (TARGET,) else "trials"
            raise LknasError(f"{flag} {source}: none of its finished {what} is one of this run's "
                             f"{len(wanted)} jobs (each must match in architecture, seed, data set, resolution "
                             "and training settings: give the same --space, --sample-seed, budgets, --data and "
                             "--target-data)")
        for fp, row in theirs.items():
            done.setdefault(fp, row)
    return [{**done[fp], **j.identity()} for j, fp in wanted if fp in done]


# Keys --proxy-set / --target-set leave to their own flags (the budget, the data) or to the run (the seeds).
OWN_FLAGS = {
    "--proxy-set": {"steps": "--steps", "epochs": "--epochs", "dataset": "--data", "resolution": "the space's train",
                    "seed": "--seeds", "data_seed": "--sample-seed"},
    "--target-set": {"steps": "--target-steps", "epochs": "--target-epochs", "dataset": "--target-data",
                     "resolution": "--target-resolution", "seed": "--seeds", "data_seed": "--sample-seed"},
}


def parse_proxy_set(items: dict[str, Any] | list[str] | None, flag: str = "--proxy-set") -> dict[str, Any]:
    """`--proxy-set KEY=VALUE` items (or a mapping) -> train settings of the proxy half, checked as the
    space's train section is (values are YAML scalars, read safely). `flag` names the flag in errors
    (`--target-set` parses the target half's the same way).

    Raises:
        LknasError: not KEY=VALUE, a key train does not have or that has its own flag, a bad value.
    """
    from lknas.space.configs import TRAIN_FIELDS, _fields

    own = OWN_FLAGS[flag]
    raw: dict[str, Any] = {}
    for item in (items.items() if isinstance(items, dict) else (items or ())):
        if isinstance(item, str):
            key, eq, text = item.partition("=")
            if not eq or not key.strip():
                raise LknasError(f"{flag} {item!r}: give KEY=VALUE, e.g. {flag} warmup_epochs=0.1")
            item = (key.strip(), _scalar(text))
        key, value = item
        if key in own:
            raise LknasError(f"{flag} {key}: set it with {own[key]} instead")
        raw[key] = value
    issues: list[tuple[str, str]] = []
    parsed = _fields(raw, TRAIN_FIELDS, tuple(TRAIN_FIELDS), flag, issues)
    issues += [(f"{flag} {k}", f"{k} must be one value here, not a search domain")
               for k, v in parsed.items() if not isinstance(v, (str, int, float, type(None)))]
    if issues:
        raise LknasError("; ".join(f"{where.replace(f'{flag}.', f'{flag} ')}: {why}"
                                   for where, why in issues))
    return parsed


def _scalar(text: str) -> Any:
    """A command-line value: an int, a float (1e-3 too, which YAML 1.1 reads as a string), else YAML."""
    import yaml

    text = text.strip()
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _make_jobs(archs: list, proxy: TrainConfig, target: dict[str, Any], target_resolution: int,
               target_dataset: str, seeds: int, recipe: dict[str, Any] | None = None,
               target_recipe: dict[str, Any] | None = None, target_seeds: int | None = None) -> list[Job]:
    jobs: list[Job] = []
    fixed = {"data_seed": proxy.data_set_seed}  # the seeds vary initialization and order, not the data
    for budget, train, res, data, n in ((PROXY, {**fixed, **(recipe or {})}, proxy.resolution, proxy.dataset, seeds),
                                        (TARGET, {**fixed, **(target_recipe or {}), **target}, target_resolution,
                                         target_dataset, target_seeds or seeds)):
        for i, arch in enumerate(archs):
            for seed in range(n):
                jobs.append(Job(len(jobs), "fidelity", "arch", f"a{i:02d}", float(i), data, seed, res,
                                arch.to_yaml(), budget=budget, train=dict(train)))
    return jobs


# ----------------------------------------------------------------------------- statistics
def _kernel_dims(arch_yaml: str, resolution: int) -> dict[str, Any]:
    from lknas.arch import ArchConfig

    arch = ArchConfig.from_yaml(arch_yaml)
    dims: dict[str, Any] = {"kernel_type": arch.kernel_types[0]}  # the design (a last stage may fall back to dense)
    for i, k in enumerate(arch.applied_kernel_sizes(resolution)):
        dims[f"stages[{i}].kernel"] = k
    return dims


def kernel_effects(proxy: pd.DataFrame, seed_std: float, target: pd.DataFrame | None = None,
                   target_seed_std: float | None = None) -> list[dict[str, Any]]:
    """For each kernel dimension with 2+ values among the architectures: the per-value mean
    accuracy (over architectures' seed means), its range, and the range over the seed noise.

    With `target`, the same architectures' means at the target budget, grouped by the proxy's
    kernel values (the kernel a net applies at the proxy resolution), go beside them: whether a
    kernel effect the proxy sees survives the larger budget."""
    per_arch = proxy.groupby("point").agg(accuracy=("accuracy", "mean"), arch_yaml=("arch_yaml", "first"),
                                          resolution=("resolution", "first"))
    rows = [dict(_kernel_dims(r.arch_yaml, int(r.resolution)), point=r.Index, accuracy=r.accuracy)
            for r in per_arch.itertuples()]
    table = pd.DataFrame(rows)
    if target is not None and not target.empty:
        table["target"] = table["point"].map(target.groupby("point")["accuracy"].mean())
    effects = []
    for dim in [c for c in table.columns if c not in ("accuracy", "point", "target")]:
        groups = table.groupby(dim)["accuracy"]
        if groups.ngroups < 2:
            continue
        means = groups.mean()
        spread = float(means.max() - means.min())
        effect = {"dimension": dim, "values": {str(k): round(float(v), 2) for k, v in means.items()},
                  "archs": {str(k): int(v) for k, v in groups.size().items()}, "range": spread,
                  "range_over_seed_std": spread / seed_std if seed_std > 0 else float("inf")}
        if "target" in table.columns and table["target"].notna().all():
            at_target = table.groupby(dim)["target"].mean()
            t_spread = float(at_target.max() - at_target.min())
            effect.update(target_values={str(k): round(float(v), 2) for k, v in at_target.items()},
                          target_range=t_spread,
                          target_range_over_seed_std=(t_spread / target_seed_std if target_seed_std
                                                      else None))
        effects.append(effect)
    return sorted(effects, key=lambda e: -e["range_over_seed_std"])


def rank_changes(points: list[str], proxy_mean: list[float], target_mean: list[float],
                 summaries: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Each architecture's rank (1 = most accurate; ties share the average, as in the Spearman rho
    beside it) at both budgets, the largest moves first: which nets the proxy misjudges, so a user
    can see what they share (depth, width, a kernel)."""
    proxy_rank = rankdata([-v for v in proxy_mean])
    target_rank = rankdata([-v for v in target_mean])
    rows = [{"point": p, "summary": (summaries or {}).get(p, ""), "proxy_rank": float(pr), "target_rank": float(tr),
             "proxy": round(float(pm), 2), "target": round(float(tm), 2)}
            for p, pr, tr, pm, tm in zip(points, proxy_rank, target_rank, proxy_mean, target_mean)]
    return sorted(rows, key=lambda r: (-abs(r["proxy_rank"] - r["target_rank"]), r["point"]))


def fidelity_stats(df: pd.DataFrame) -> dict[str, Any]:
    """The fidelity statistics of a fidelity run's trials (see the module docstring)."""
    if df.empty or "budget" not in df.columns:
        raise ValueError("no fidelity trials (a `budget` column) in this run")
    ok = df[df["status"] == TrialStatus.OK]
    by_budget = {b: ok[ok["budget"] == b] for b in (PROXY, TARGET)}
    points = sorted(set(by_budget[PROXY]["point"]) & set(by_budget[TARGET]["point"]))
    groups = {b: [by_budget[b][by_budget[b]["point"] == p]["accuracy"].astype(float).tolist() for p in points]
              for b in (PROXY, TARGET)}
    agreement = rank_agreement(groups[PROXY], groups[TARGET])
    out = agreement.to_dict()
    out["points"] = points
    out["proxy_mean"] = [float(np.mean(g)) for g in groups[PROXY]]
    out["target_mean"] = [float(np.mean(g)) for g in groups[TARGET]]
    out["proxy_std"] = [float(np.std(g, ddof=1)) if len(g) > 1 else float("nan") for g in groups[PROXY]]
    out["target_std"] = [float(np.std(g, ddof=1)) if len(g) > 1 else float("nan") for g in groups[TARGET]]
    seed_tables = {b: by_budget[b].pivot_table(index="point", columns="seed", values="accuracy", aggfunc="mean")
                   .reindex(points).to_numpy(dtype=float) for b in (PROXY, TARGET)}  # architecture x seed
    for b in (PROXY, TARGET):  # how well each budget reproduces its own ranking from seed to seed
        out[f"seed_tau_{b}"] = seed_tau(seed_tables[b])
    icc1 = agreement.icc_proxy["icc"]  # a proxy of k averaged runs: measured tau per k, Spearman-Brown ICC per k
    out["runs_averaged"] = [{**r, "icc": spearman_brown(icc1, r["runs"])}
                            for r in runs_averaged(seed_tables[PROXY], out["target_mean"])]
    out["runs_for_icc"] = runs_for_icc(icc1)
    seed_std = math.sqrt(agreement.icc_proxy["var_seed"])
    out["seed_std_proxy"] = seed_std
    target_seed_std = math.sqrt(agreement.icc_target["var_seed"]) if agreement.icc_target else None
    out["kernel_effects"] = kernel_effects(by_budget[PROXY], seed_std, by_budget[TARGET], target_seed_std)
    summaries = (by_budget[PROXY].groupby("point")["summary"].first().astype(str).to_dict()
                 if "summary" in by_budget[PROXY].columns else {})
    out["rank_changes"] = rank_changes(points, out["proxy_mean"], out["target_mean"], summaries)
    for b in (PROXY, TARGET):
        times = pd.to_numeric(by_budget[b].get("wall_time", pd.Series(dtype=float)), errors="coerce")
        out[f"{b}_trial_seconds"] = float(times.mean()) if times.notna().any() else None
    out["failed"] = int((df["status"] != TrialStatus.OK).sum())
    return out


def _ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _icc_ci(icc: dict[str, Any], key: str) -> str:
    """' [lo, hi]' (the exact 95% interval) when the statistics have it (runs before 12-02 do not)."""
    ci = icc.get(key)
    if not isinstance(ci, (list, tuple)) or len(ci) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v)
                                                                     for v in ci):
        return ""
    return " " + _ci(ci)


def format_fidelity(stats: dict[str, Any], settings: dict[str, Any] | None = None) -> str:
    """The statistics as a few lines of text."""
    if "error" in stats:
        return f"fidelity: {stats['error']}"
    budgets = (settings or {}).get("budgets", {})
    recipe, target_recipe = _recipe_text(settings or {}), _recipe_text(settings or {}, "target_set")
    lines = ["fidelity of the proxy budget" + (f" ({_budget_text(budgets[PROXY])}{recipe} vs "
                                              f"{_budget_text(budgets[TARGET])}{target_recipe})" if budgets else "")
             + f", {stats['archs']} architectures:",
             f"  Spearman rho {stats['spearman']:.3f} {_ci(stats['spearman_ci'])}, Kendall tau {stats['kendall']:.3f} "
             f"{_ci(stats['kendall_ci'])} (95% bootstrap over architectures and seeds, {stats['resamples']} resamples)"]
    for name in ("proxy", "target"):
        icc = stats.get(f"icc_{name}")
        if icc:
            lines.append(f"  {name}: ICC {icc['icc']:.3f}{_icc_ci(icc, 'icc_ci')} (seed noise {icc['seed_share']:.0%} "
                         f"of the variance; architecture sd {math.sqrt(icc['var_arch']):.2f}, seed sd "
                         f"{math.sqrt(icc['var_seed']):.2f} points; mean of {icc['k']:.0f} seeds: ICC "
                         f"{icc['icc_mean']:.3f}{_icc_ci(icc, 'icc_mean_ci')})")
    own = {b: stats.get(f"seed_tau_{b}") for b in (PROXY, TARGET)}
    if all(v is not None and math.isfinite(v) for v in own.values()):
        lines.append(f"  seed vs seed: Kendall tau {own[PROXY]:.3f} at the proxy, {own[TARGET]:.3f} at the target "
                     "(how well each budget reproduces its own ranking: no proxy can agree with the target much "
                     "more than the target's seeds agree with each other)")
    ceiling, corrected = stats.get("tau_ceiling"), stats.get("tau_corrected")
    if isinstance(ceiling, float) and math.isfinite(ceiling):
        icc_t = stats["icc_target"]
        line = (f"  noise or bias: a noise-free proxy would reach Kendall tau {ceiling:.2f} "
                f"{_ci(stats.get('tau_ceiling_ci', [math.nan] * 2))} against this target's {icc_t['k']:.0f}-seed means "
                f"(their ICC {icc_t['icc_mean']:.2f})")
        if isinstance(corrected, float) and math.isfinite(corrected):
            line += (f"; the measured tau with both budgets' seed noise divided out is {corrected:.2f} "
                     f"{_ci(stats.get('tau_corrected_ci', [math.nan] * 2))} ("
                     + ("1 or more: what disagrees is seed noise" if corrected >= 0.995 else
                        "below 1: part of the disagreement is a bias that more seeds would not remove")
                     + "; normal model, Spearman's correction for attenuation)")
        lines.append(line)
    runs = stats.get("runs_averaged") or []
    if len(runs) >= 2 and all(math.isfinite(r["kendall"]) for r in runs):  # not for a constant ranking
        need = stats.get("runs_for_icc")
        lines.append("  the proxy as the mean of k runs: " + ", ".join(
            f"k={r['runs']} tau {r['kendall']:.2f} (ICC {r['icc']:.2f})" for r in runs)
            + " (tau: measured, the mean over the k-subsets of the seeds; ICC: Spearman-Brown from one run's); "
            + (f"ICC >= 0.75 needs {need} run{'s' if need > 1 else ''} per architecture"
               + (f" (`lknas search --trial-seeds {need}`)" if 1 < need <= MAX_TRIAL_SEEDS else "") if need else
               "no number of runs reaches ICC 0.75 (one run's ICC is not positive)"))
    for e in stats.get("kernel_effects", [])[:3]:
        values = ", ".join(f"{k}: {v:.1f}" for k, v in e["values"].items())
        line = (f"  effect of {e['dimension']}: {values} (range {e['range']:.1f} points = "
                f"{e['range_over_seed_std']:.1f}x the seed sd)")
        if "target_values" in e:  # does the proxy's kernel effect survive the larger budget?
            at_target = ", ".join(f"{k}: {v:.1f}" for k, v in e["target_values"].items())
            ratio = e.get("target_range_over_seed_std")
            line += f"; at the target {at_target} (range {e['target_range']:.1f} points" + (
                f" = {ratio:.1f}x its seed sd)" if isinstance(ratio, (int, float)) and math.isfinite(ratio) else ")")
        lines.append(line)
    moves = [r for r in stats.get("rank_changes", []) if abs(r["proxy_rank"] - r["target_rank"]) >= 2][:3]
    if moves:
        lines.append(f"  largest rank changes (1 = best of {stats['archs']}): " + "; ".join(
            f"{r['point']}{' (' + r['summary'] + ')' if r['summary'] else ''} {r['proxy_rank']:g} at the proxy "
            f"({r['proxy']:.1f}%), {r['target_rank']:g} at the target ({r['target']:.1f}%)" for r in moves))
    return "\n".join(lines)
