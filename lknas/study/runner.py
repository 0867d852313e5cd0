"""`run_scale`: a scaling study, each (point, dataset, seed) a Ray Tune trial.

The experiment is validated and expanded into points (FLOPs matched where asked) and the data sets
are built (and cached) before Ray starts. Trials reuse the search's pieces: the same measurements
(`measure_trial` through the search trial's helpers), the same `SearchMonitor` callback and the
same `RunStore`, so a study lands in the search's results format with extra columns `dimension`,
`point`, `value`, `variant`, `dataset` and `seed`, and `python -m lknas report` works on it.

Re-running with the same `--out` continues a study: the jobs are read back from `jobs.json` and
only those missing from `trials.jsonl` run. A study holds its run directory's lock (`RunStore.hold`)
while it runs, so a second study or search on the same directory is refused.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lknas.errors import LknasError
from lknas.io import write_json_atomic
from lknas.search.store import RunStore
from lknas.status import FAILED, TrialStatus
from lknas.study.experiment import Experiment, load_experiment
from lknas.study.points import Point, expand

__all__ = ["run_scale", "ScaleOutcome", "Job", "make_jobs", "job_train_config"]

NUMBER_KEY = "lknas.trial"  # the search's key: SearchMonitor and clean_row know it


@dataclass(frozen=True)
class Job:
    """One trial: a point of the study on one data set with one seed."""

    trial: int
    variant: str
    dimension: str
    point: str
    value: float
    dataset: str
    seed: int
    resolution: int
    arch_yaml: str
    budget: str = ""  # a fidelity run's 'proxy' or 'target'
    train: dict[str, Any] = field(default_factory=dict)  # this job's overrides of the run's train settings

    def identity(self) -> dict[str, Any]:
        out = {"trial": self.trial, "variant": self.variant, "dimension": self.dimension, "point": self.point,
               "value": self.value, "dataset": self.dataset, "seed": self.seed, "resolution": self.resolution}
        if self.budget:
            out["budget"] = self.budget
        return out


@dataclass(frozen=True)
class ScaleContext:
    """What every trial of a study shares; pickled to the Ray workers."""

    jobs: tuple[Job, ...]
    train: dict[str, Any]
    classes: dict[str, tuple[int, int]] = field(default_factory=dict)  # dataset -> (num_classes, in_chans)
    threads: int = 1
    device: str = "cpu"
    erf: bool = True


@dataclass
class ScaleOutcome:
    run_dir: Path
    trials: pd.DataFrame
    interrupted: bool = False


def make_jobs(points: list[Point], datasets: tuple[str, ...], seeds: tuple[int, ...]) -> list[Job]:
    jobs = []
    for dataset in datasets:
        for p in points:
            for seed in seeds:
                jobs.append(Job(len(jobs), p.variant, p.dimension, p.point, p.value, dataset, seed, p.resolution,
                                p.arch.to_yaml()))
    return jobs


def run_point(config: dict[str, Any], ctx: ScaleContext) -> None:
    """Ray Tune function trainable: train and measure one fixed architecture of a study."""
    import warnings

    import torch

    from lknas import quiet
    from lknas.ops.allocator import keep_freed_memory
    from lknas.search.trial import placement, report

    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
    job = ctx.jobs[int(config[NUMBER_KEY])]
    torch.set_num_threads(max(1, ctx.threads))
    keep_freed_memory()
    base: dict[str, Any] = {**job.identity(), "status": "running", **placement(ctx.device)}
    try:
        with quiet.working():
            _run_job(job, ctx, base)
    except Exception as err:  # a broken trial is recorded, the study goes on
        report({**base, "status": TrialStatus.ERROR.value, "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc(limit=8)})


def job_train_config(train: dict[str, Any], job: Job):
    """The TrainConfig a job trains with: the run's train settings, the job's overrides, its data
    set, seed and resolution."""
    from lknas.space.configs import TrainConfig

    return TrainConfig(**{**train, **job.train, "dataset": job.dataset, "seed": job.seed,
                          "resolution": job.resolution})


def _run_job(job: Job, ctx: ScaleContext, base: dict[str, Any]) -> None:
    from lknas.arch import ArchConfig
    from lknas.search.trial import TrialContext, _static, _train_and_report, train_record

    arch = ArchConfig.from_yaml(job.arch_yaml)
    cfg = job_train_config(ctx.train, job)
    num_classes, in_chans = ctx.classes.get(job.dataset, (cfg.num_classes or 2, 3))
    tctx = TrialContext(space_file="", num_classes=cfg.num_classes or num_classes, in_chans=in_chans,
                        threads=ctx.threads, device=ctx.device, latency_threads=ctx.threads, erf=ctx.erf)
    base.update(hash=arch.hash(), summary=arch.summary(), arch_yaml=job.arch_yaml)
    base["train"] = train_record(cfg)  # repeats the trial (+ its layout)
    base.update(_static(arch, cfg, tctx, None))
    _train_and_report(arch, cfg, tctx, base)


def _default_out(exp: Experiment) -> Path:
    return Path("results") / f"{exp.name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def run_scale(
    experiment: str | os.PathLike | None = None,
    *,
    out: str | os.PathLike | None = None,
    seeds: int | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    dataset: str | None = None,
    address: str | None = None,
    cpus_per_trial: float | None = None,
    gpus_per_trial: float | None = None,
    max_concurrent: int | None = None,
    erf: bool = True,
    quiet: bool = False,
    stream=None,
) -> ScaleOutcome:
    """Run (or continue, with the same `out`) a scaling study.

    Args:
        experiment: the experiment file (`experiments/NAME.yaml`); may be None when `out` holds a
            study to continue.
        out: the run directory (default results/scale-NAME-DATE-TIME); an existing one continues.
        seeds: seeds per point (a count); continuing, a larger count adds the missing seeds to
            every point and keeps the trials already run.
        epochs, steps, dataset: override the experiment file's budget and data (one data set
            instead of its list).
        address: a Ray cluster to join (default: a local Ray).
        cpus_per_trial, gpus_per_trial, max_concurrent: each trial's resources and how many run
            at once.
        erf: measure each trained net's effective receptive field.
        quiet: log lines instead of the live progress view; `stream`: where (default stdout).

    Returns:
        A `ScaleOutcome` (the run directory, its trials, interrupted or not).

    Raises:
        LknasError: a malformed experiment file, settings that do not fit a study being continued,
            a run directory another process holds, or a Ray cluster that does not answer.
    """
    from lknas.search.env_check import check_environment

    check_environment()  # LKNAS_* values every trial reads: refused here, not in each trial
    stream = stream or sys.stdout
    exp = None
    if out is None or not (Path(out) / "jobs.json").is_file():
        if experiment is None:
            raise LknasError("give an experiment file (--experiment experiments/NAME.yaml)")
        exp = load_experiment(experiment)  # a malformed file fails here, before anything is built
    store = RunStore(out or _default_out(exp))
    with store.hold("scale"):  # one writer per run directory, released however the study ends
        if exp is None:
            store.repair_tail()
            settings = store.read_settings()
            _check_settings(settings, str(store.settings_file))
            jobs = _read_jobs(store.root / "jobs.json")
            print(f"continuing the study in {store.root}", file=stream)
            if seeds is not None:
                jobs = _more_seeds(store, settings, jobs, seeds, stream)
        else:
            settings, jobs = _new_study(store, exp, seeds=seeds, epochs=epochs, steps=steps, dataset=dataset,
                                        address=address, cpus_per_trial=cpus_per_trial,
                                        gpus_per_trial=gpus_per_trial, max_concurrent=max_concurrent)
        return _run_jobs(store, settings, jobs, erf=erf, quiet=quiet, stream=stream)


def _new_study(store: RunStore, exp: Experiment, *, seeds, epochs, steps, dataset, address, cpus_per_trial,
               gpus_per_trial, max_concurrent) -> tuple[dict[str, Any], list[Job]]:
    """Expand the experiment into jobs and write the study's settings (run.json, jobs.json)."""
    train = exp.train.replace(**{k: v for k, v in (("epochs", epochs), ("steps", steps)) if v is not None})
    datasets = (dataset,) if dataset else exp.datasets
    seed_list = tuple(range(seeds)) if seeds else exp.seeds
    run = dict(exp.run)
    for key, value in (("cpus_per_trial", cpus_per_trial), ("gpus_per_trial", gpus_per_trial),
                       ("max_concurrent", max_concurrent)):
        if value is not None:
            run[key] = value
    if store.trials_jsonl.exists():
        raise LknasError(f"{store.root} already holds trials but no jobs.json; choose another --out")
    points = expand(exp)
    jobs = make_jobs(points, datasets, seed_list)
    settings = {
        "kind": "scale", "experiment": str(exp.file), "name": exp.name, "description": exp.description,
        "search": {"objectives": [o.to_dict() for o in exp.objectives], "trials": len(jobs),
                   "sampler": "grid", **run},
        "train": train.to_dict(), "datasets": list(datasets), "seeds": list(seed_list),
        "variants": exp.variants, "scale": exp.scale, "points": len(points), "address": address,
        "created": dt.datetime.now().isoformat(timespec="seconds"), "space_name": exp.name,
    }
    _check_settings(settings, f"{exp.file} with the flags")  # e.g. run.cpus_per_trial 0: before any file
    shutil.copyfile(exp.file, store.root / "experiment.yaml")
    store.write_settings(settings)
    write_json_atomic(store.root / "jobs.json", [j.__dict__ for j in jobs])
    return settings, jobs


def _more_seeds(store: RunStore, settings: dict[str, Any], jobs: list[Job], seeds: int, stream) -> list[Job]:
    """`jobs` with new seeds appended to every point and data set, up to `seeds` seeds each (the
    smallest seeds not yet used); jobs.json and run.json rewritten. LknasError for fewer seeds."""
    have = sorted({j.seed for j in jobs})  # from the jobs: a kill between the two writes below repeats nothing
    if seeds < len(have):
        raise LknasError(f"--seeds {seeds}: {store.root} already runs {len(have)} seeds per point; a study's seeds "
                         f"can only grow (give {len(have)} or more, or start another study with --out)")
    new = [s for s in range(seeds + max(have, default=0) + 1) if s not in have][:seeds - len(have)]
    if not new:
        return jobs
    firsts = {}
    for job in jobs:  # one job per (point, data set, budget) carries everything but the seed
        firsts.setdefault((job.variant, job.dimension, job.point, job.dataset, job.budget), job)
    added = [dataclasses.replace(job, trial=len(jobs) + i * len(firsts) + n, seed=seed)
             for i, seed in enumerate(new) for n, job in enumerate(firsts.values())]
    jobs = jobs + added
    write_json_atomic(store.root / "jobs.json", [j.__dict__ for j in jobs])
    settings["seeds"] = have + new
    settings["search"]["trials"] = len(jobs)
    store.write_settings(settings)
    print(f"seeds {', '.join(map(str, new))} added: {len(added)} more trials", file=stream)
    return jobs


def _check_settings(settings: dict[str, Any], where: str) -> None:
    """LknasError naming `where` unless a study's settings hold what `_run_jobs` reads, each passing
    the space file's own checks (run resources > 0, train.epochs >= 1, ...)."""
    from lknas.search.store import settings_problems
    from lknas.space.configs import parse_train

    problems = settings_problems(settings)
    if not problems:
        issues: list[tuple[str, str]] = []
        parse_train(settings.get("train"), issues)
        problems = [f"{path}: {message}" for path, message in issues]
        for key, kind in (("name", str), ("experiment", str), ("points", int), ("datasets", list), ("seeds", list)):
            if not isinstance(settings.get(key), kind):
                problems.append(f"{key}: expected {kind.__name__}, got {settings.get(key)!r}")
        if not isinstance(settings.get("address"), (str, type(None))):
            problems.append(f"address: expected a string or null, got {settings.get('address')!r}")
    if problems:
        raise LknasError(f"{where}: " + "; ".join(problems))


def _read_jobs(path: Path) -> list[Job]:
    """The study's jobs.json; LknasError naming the file when it is not what `run_scale` wrote."""
    try:
        jobs = [Job(**j) for j in json.loads(path.read_text())]
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as err:
        raise LknasError(f"{path}: cannot read the study's jobs ({type(err).__name__}: {err}); it is written by "
                         f"`python -m lknas scale`: restore it, or start the study again with another --out") from None
    if not jobs:
        raise LknasError(f"{path}: the study has no jobs; start it again with another --out")
    return jobs


def _run_jobs(store: RunStore, settings: dict[str, Any], jobs: list[Job], *, erf: bool, quiet: bool,
              stream) -> ScaleOutcome:
    from lknas.data import build_data
    from lknas.search.store import run_objectives
    from lknas.space.configs import TrainConfig
    from lknas.train.proxy import check_curriculum

    objectives = run_objectives(settings)
    run = settings["search"]
    train = settings["train"]
    classes: dict[str, tuple[int, int]] = {}
    for key in sorted({(j.dataset, j.resolution, j.train.get("data_seed", j.seed)) for j in jobs}):  # fails before Ray
        bundle = build_data(key[0], resolution=key[1], batch_size=train["batch_size"], seed=key[2],
                            subset=train.get("subset"))
        classes[key[0]] = (bundle.num_classes, bundle.in_chans)
        check_curriculum(TrainConfig(**train), bundle)
    done = {int(r["trial"]) for r in store.rows() if "trial" in r}
    todo = [j for j in jobs if j.trial not in done]
    summary = lambda: _summary(store, settings, len(jobs))  # noqa: E731
    if not todo:
        store.refresh(objectives, summary())
        print(f"{store.root}: all {len(jobs)} trials are done", file=stream)
        return ScaleOutcome(store.root, store.frame())
    cpus = float(run.get("cpus_per_trial") or 1)
    gpus = float(run.get("gpus_per_trial") or 0)
    from lknas.device import trial_device

    ctx = ScaleContext(jobs=tuple(jobs), train=train, classes=classes, threads=max(1, int(cpus)),
                       device=trial_device(gpus), erf=erf)
    from lknas.search.runner import _init_ray

    _init_ray(settings.get("address"), quiet, cpus, gpus)
    from lknas.search.monitor import SearchMonitor

    monitor = SearchMonitor(store, objectives, len(jobs), len(done), quiet=quiet, stream=stream, summary=summary)
    command = settings.get("kind", "scale")
    seeds = len(settings["seeds"])
    target_seeds = len(settings.get("target_seeds", settings["seeds"]))
    grid = ((f"{settings['points']} architectures x {seeds} seeds x 2 budgets" if target_seeds == seeds else
             f"{settings['points']} architectures x ({seeds} proxy + {target_seeds} target seeds)")
            if command == "fidelity"
            else f"{settings['points']} points x {len(settings['datasets'])} data sets x {seeds} seeds")
    print(f"lknas {command}: {settings['name']}, {len(todo)} of {len(jobs)} trials to run ({grid}); "
          f"results in {store.root}", file=stream, flush=True)
    interrupted = False
    try:
        _fit(ctx, todo, store, monitor, cpus, gpus, run.get("max_concurrent"))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        monitor.close()
    store.refresh(objectives, summary())
    missing = len(jobs) - len(store.rows())
    if interrupted or missing > 0:
        interrupted = True
        print(f"interrupted: {missing} trials missing; continue with\n  python -m lknas {command} --out {store.root}",
              file=stream)
    print(f"results: {store.root} (trials.csv, pareto.csv, archs/); plots: python -m lknas report {store.root}",
          file=stream)
    return ScaleOutcome(store.root, store.frame(), interrupted)


def _fit(ctx: ScaleContext, todo: list[Job], store: RunStore, monitor, cpus: float, gpus: float,
         max_concurrent: int | None) -> None:
    from ray import tune

    from lknas.search.cluster import trial_slots

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    concurrency = int(max_concurrent or trial_slots(cpus, gpus))
    trainable = tune.with_resources(tune.with_parameters(run_point, ctx=ctx), {"cpu": cpus, "gpu": gpus})
    tuner = tune.Tuner(
        trainable,
        param_space={NUMBER_KEY: tune.grid_search([j.trial for j in todo])},
        tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=concurrency, reuse_actors=True,
                                    trial_dirname_creator=lambda t: f"trial-{t.config.get(NUMBER_KEY)}-{t.trial_id}"),
        run_config=tune.RunConfig(name=f"{store.root.name}-{int(time.time())}",
                                  storage_path=str((store.root / "ray").resolve()), callbacks=[monitor], verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )
    tuner.fit()


def _source_line(settings: dict[str, Any]) -> str:
    """'experiment: experiments/kernel_types.yaml', or 'space: NAME (FILE)' where the name is not
    the file's stem (a fidelity run's own name, fidelity-SPACE, is not the space's)."""
    if settings.get("kind") == "fidelity":
        label, name, source = "space", settings.get("space_name") or settings["name"], settings.get("space", "")
    else:
        label, name, source = "experiment", settings["name"], settings.get("experiment", "")
    if not source or Path(source).stem == name:
        return f"{label}: {source or name}"
    return f"{label}: {name} ({source})"


def _summary(store: RunStore, settings: dict[str, Any], total: int) -> str:
    df = store.frame()
    counts = df["status"].value_counts().to_dict() if not df.empty else {}
    fidelity = settings.get("kind") == "fidelity"
    kind = "fidelity measurement" if fidelity else "scaling study"
    lines = [f"lknas {kind} {store.root}", _source_line(settings),
             f"trials: {len(df)} of {total} finished: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))]
    if not df.empty and "accuracy" in df.columns:
        ok = df[df["status"] == TrialStatus.OK]
        if not ok.empty:
            keys = ["budget"] if "budget" in ok.columns else []
            table = (ok.groupby(keys + ["dataset", "variant", "dimension", "point"], sort=False)
                     .agg(accuracy=("accuracy", "mean"), std=("accuracy", "std"), flops=("flops_effective", "mean"),
                          seeds=("seed", "count")).reset_index())
            lines.append(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for _, row in df[df["status"].isin(FAILED)].iterrows() if not df.empty else []:
        lines.append(f"  trial {row['trial']} {row['status']}: {row.get('error') or ''}")
    return "\n".join(lines) + "\n"
