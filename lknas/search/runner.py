"""`run_search`: a multi-objective architecture search with Ray Tune and Optuna.

Ray Tune's `Tuner` owns the trials and their resources; `LknasOptunaSearch` (Ray's OptunaSearch)
asks an Optuna sampler through a define-by-run space built from the DSL, with the study in the
run's `study.db` (SQLite). Everything a user needs lands in `results/RUN/` (see `store`).

Resume (`resume=RUN`): finished trials are read from the run's `trials.jsonl`; the same Optuna
study is loaded, reconciled with that log first (`resume.open_study`: rebuilt from it when missing,
corrupt or behind, so trial numbers are never reused), so the sampler continues with their results;
trials left RUNNING by a killed process are marked FAIL; only the missing trials are run, so the
final count is what was asked. A search holds its run directory's lock (`runlock`) throughout.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from lknas.errors import LknasError
from lknas.search.env_check import check_environment
from lknas.search.noise import is_confirm, search_rows
from lknas.search.objectives import metric_of
from lknas.search.resume import open_study, resume_settings
from lknas.search.samplers import make_sampler
from lknas.search.schedulers import check_scheduler, make_scheduler
from lknas.search.store import RunStore
from lknas.search.trial import NUMBER_KEY, TrialContext, trial_epochs
from lknas.space import SearchSpace, load_space
from lknas.space.configs import OBJECTIVE_MODES, Objective, SearchConfig
from lknas.status import FAILED, TrialStatus

__all__ = ["run_search", "SearchOutcome", "parse_objectives_flag", "default_run_dir"]

_SEARCH_OVERRIDES = ("trials", "sampler", "scheduler", "grace_period", "reduction_factor", "seed", "cpus_per_trial",
                     "gpus_per_trial", "max_concurrent", "time_budget", "confirm", "retime", "trial_seeds")
_TRAIN_OVERRIDES = ("epochs", "steps", "dataset", "batch_size", "subset", "resolution")
_OTHER_OVERRIDES = ("objectives", "address", "ray_storage", "from_")


@dataclass
class SearchOutcome:
    run_dir: Path
    trials: pd.DataFrame
    pareto: pd.DataFrame
    interrupted: bool = False
    timings: dict[str, float] = field(default_factory=dict)  # seconds per driver phase (`_search`)


def all_trials_raised(trials: pd.DataFrame, run_dir: Path, search: bool = True) -> str:
    """'' unless every trial that ran ended in an exception (status `error`; infeasible trials
    never run): then what to tell the user, with the first trial's error (and, for a `search`
    run, how to repeat it). Such a run has measured nothing, and `lknas search` and `lknas scale`
    exit non-zero for it (a GPU search whose every trial failed on a device mismatch had exited 0)."""
    rows = search_rows(trials)
    if rows.empty or "status" not in rows.columns:
        return ""
    ran = rows[rows["status"] != TrialStatus.INFEASIBLE]
    if ran.empty or not (ran["status"] == TrialStatus.ERROR).all():
        return ""
    first = ran.sort_values("trial").iloc[0]
    error = str(first.get("error") or "").strip().splitlines()
    n = int(first["trial"])
    again = (f"; `lknas export {run_dir} --trial {n}` writes its architecture, and `lknas train-proxy FILE "
             "--debug` trains it again in this process") if search else ""
    return (f"all {len(ran)} trial(s) that ran failed with an exception; the first, trial {n}: "
            f"{error[0] if error else 'no message'}. Each trial's error and traceback are in "
            f"{run_dir / 'trials.csv'}{again}")


def parse_objectives_flag(text: str) -> tuple[Objective, ...]:
    """'accuracy,latency' or 'accuracy:max,params:min' -> objectives (default modes per name)."""
    out = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        name, _, mode = part.partition(":")
        if name not in OBJECTIVE_MODES:
            raise LknasError(f"--objectives: unknown objective {name!r}; choose from {', '.join(OBJECTIVE_MODES)}")
        mode = mode or OBJECTIVE_MODES[name]
        if mode not in ("max", "min"):
            raise LknasError(f"--objectives: mode of {name!r} must be max or min, got {mode!r}")
        if any(o.name == name for o in out):
            raise LknasError(f"--objectives: {name!r} is given twice; list each objective once, e.g. accuracy,latency")
        out.append(Objective(name, mode))
    if not out:
        raise LknasError("--objectives: give at least one, e.g. accuracy,latency")
    return tuple(out)


def default_run_dir(space: SearchSpace, root: str | os.PathLike = "results") -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{space.name}-{stamp}"


def _settings(space: SearchSpace, overrides: dict[str, Any]) -> dict[str, Any]:
    search = dataclasses.replace(space.search, **{k: overrides[k] for k in _SEARCH_OVERRIDES
                                                  if overrides.get(k) is not None})
    if overrides.get("objectives"):
        search = dataclasses.replace(search, objectives=overrides["objectives"])
    train = {k: overrides[k] for k in _TRAIN_OVERRIDES if overrides.get(k) is not None}
    return {"search": search.to_dict(), "train_overrides": train, "address": overrides.get("address"),
            "ray_storage": overrides.get("ray_storage"),
            "created": dt.datetime.now().isoformat(timespec="seconds"), "space_name": space.name}


def _search_config(settings: dict[str, Any], space: SearchSpace, where: str) -> SearchConfig:
    """The SearchConfig of `settings`, checked as the space file's own `search` and `train`
    sections are (trials >= 1, cpus_per_trial > 0, steps >= 1, ...); LknasError naming `where`."""
    from lknas.space.configs import parse_search, parse_train

    issues: list[tuple[str, str]] = []
    search = parse_search(settings.get("search"), issues)
    overrides = settings.get("train_overrides")
    if not isinstance(overrides, dict) or not set(overrides) <= set(_TRAIN_OVERRIDES):
        issues.append(("train_overrides", f"a mapping of {', '.join(_TRAIN_OVERRIDES)}; got {overrides!r}"))
    else:
        parse_train({**space.train.to_dict(), **overrides}, issues)
    for key in ("address", "ray_storage"):
        if not isinstance(settings.get(key), (str, type(None))):
            issues.append((key, f"a string or null; got {settings.get(key)!r}"))
    if not isinstance(settings.get("space_name"), str):
        issues.append(("space_name", f"the space's name; got {settings.get('space_name')!r}"))
    if issues:
        raise LknasError(f"{where}: " + "; ".join(f"{path}: {message}" for path, message in issues))
    return search


def _init_ray(address: str | None, quiet: bool, cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0) -> None:
    """Start or join Ray; fails fast (LknasError) on an unreachable address or a trial no node holds."""
    from lknas.search.cluster import init_ray

    init_ray(address, quiet, cpus_per_trial, gpus_per_trial)


def run_search(
    space: str | os.PathLike | None = None,
    *,
    resume: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    quiet: bool = False,
    stream=None,
    **overrides: Any,
) -> SearchOutcome:
    """Run (or resume) a search. `overrides` take precedence over the space's `search`/`train`
    sections: trials, sampler, objectives (tuple of Objective), scheduler, grace_period and
    reduction_factor (asha / moasha: `lknas.search.schedulers`), seed, cpus_per_trial,
    gpus_per_trial, max_concurrent, time_budget, confirm, retime, trial_seeds, epochs, steps,
    dataset, batch_size, subset, resolution, address, ray_storage (Ray Tune's storage_path: NFS or
    s3:// on multi-node clusters), from_ (architectures to evaluate first: `lknas.search.seeds`).
    At resume only the flags of `resume.CHANGEABLE_AT_RESUME` may change; they are saved to run.json.
    The run directory is held (`RunStore.hold`) from before anything is written until the search
    returns: a second search on it fails with RunBusyError (a LknasError) before Ray starts.

    Raises:
        TypeError: an override this function does not know (`trails=5`), before anything is read
            or written; the message names it and the closest known name.
        LknasError: a malformed space, settings that do not fit it, or a run that cannot start.
    """
    _check_override_names(overrides)
    check_environment()  # LKNAS_* values every trial reads: refused here, not in each trial
    stream = stream or sys.stdout
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if resume is not None:
        store = RunStore(resume)
        store.read_settings()  # not a run: fail before anything is locked or written
    else:
        if space is None:
            raise LknasError("give a space (--space NAME.yaml) or a run to resume (--resume results/RUN)")
        space_obj = load_space(space)  # a malformed space fails here, before Ray starts
        if space_obj.is_fixed and not space_obj.template.train:
            print(f"warning: {space_obj.file} is one architecture (nothing in it is searched): every trial trains "
                  f"the same network. To train it once: `python -m lknas train-proxy --arch {space_obj.file}`; to "
                  f"search, give domains such as `kernel: {{choice: [7, 13]}}` (docs/space-format.md)", file=stream)
        for warning in space_obj.warnings():
            print(f"warning: {warning}", file=stream)
        settings = _settings(space_obj, overrides)
        # the overrides too: grid size, cmaes objectives, the largest model's memory at --batch-size
        space_obj.check_run(_search_config(settings, space_obj, "settings"),
                            space_obj.train.replace(**settings["train_overrides"]))
        store = RunStore(out or default_run_dir(space_obj))
    with store.hold("search"):
        if resume is not None:
            store.repair_tail()
            space_obj = load_space(store.space_file)
            settings, changed = resume_settings(store, space_obj, overrides)
            for note in changed:
                print(f"resume: {note}; saved to run.json", file=stream)
        else:
            if store.trials_jsonl.exists() or store.settings_file.exists():
                raise LknasError(f"{store.root} already holds a search; resume it with --resume {store.root} "
                                 f"or choose another --out")
            shutil.copyfile(space_obj.file, store.space_file)
            store.write_settings(settings)
        return _search(store, space_obj, settings, resume, quiet, stream, overrides)


def _check_override_names(overrides: dict[str, Any]) -> None:
    """TypeError for keyword arguments `run_search` does not take, as Python raises for a fixed
    signature (they would otherwise be dropped without a word)."""
    import difflib

    known = _SEARCH_OVERRIDES + _TRAIN_OVERRIDES + _OTHER_OVERRIDES
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, known, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise TypeError(f"run_search() got unexpected keyword argument(s) {', '.join(hints)}; it takes "
                        f"space, resume, out, quiet, stream and {', '.join(known)}")


def _latency_reference(store: RunStore, settings: dict[str, Any], resolution: int, in_chans: int, device: str,
                       threads: int) -> float | None:
    """The reference net's time that every trial's latency is scaled to (`lknas.measure.reference`):
    timed once before the first trial and kept in run.json, so a resumed search keeps it. CPU
    latencies only (None on a GPU)."""
    from lknas.measure import reference

    if device != "cpu":
        return None
    want = {"version": reference.VERSION, "resolution": resolution, "in_chans": in_chans, "threads": threads}
    kept = settings.get("latency_reference")
    if isinstance(kept, dict) and {k: kept.get(k) for k in want} == want and isinstance(kept.get("ms"), (int, float)) \
            and kept["ms"] > 0:
        return float(kept["ms"])
    ms = reference.reference_ms(resolution, in_chans, threads=threads)
    settings["latency_reference"] = {**want, "ms": ms}
    store.write_settings(settings)
    return ms


def _search(store: RunStore, space_obj: SearchSpace, settings: dict[str, Any], resume, quiet: bool, stream,
            overrides: dict[str, Any]) -> SearchOutcome:
    search = _search_config(settings, space_obj, str(store.settings_file))
    phase = _Phases()  # "data" includes the service's start and the driver's imports, as before it
    service = _timing_service(store, search)
    try:
        return _search_with(store, space_obj, settings, resume, quiet, stream, overrides, search, service, phase)
    finally:
        if service is not None:
            service.close(wait=False)  # its exit overlaps what the caller does next


def _timing_service(store: RunStore, search: SearchConfig):
    """The node's timing service (`lknas.measure.isolated.ChildTimer` with a socket) for this
    search's CPU trials and its retime phase: one fresh process times every deploy model, started
    before the data are built so that its torch import overlaps them. None for GPU trials,
    LKNAS_LATENCY_PROCESS=trial, or when no trial is left to run."""
    from lknas.device import trial_device
    from lknas.measure.isolated import ChildTimer, service_path
    from lknas.search.trial import latency_process

    device = trial_device(search.gpus_per_trial)
    if device != "cpu" or search.trials - _searched(store) <= 0:
        return None
    if latency_process(TrialContext(space_file="", device=device)) != "child" or (path := service_path()) is None:
        return None
    try:
        return ChildTimer(None, socket_path=path, threads=max(1, int(search.cpus_per_trial)))
    except (LknasError, OSError) as err:  # each worker then starts its own timing process
        print(f"lknas: {err}; each Ray worker times in a process of its own", file=sys.stderr)
        return None


def _search_with(store: RunStore, space_obj: SearchSpace, settings: dict[str, Any], resume, quiet: bool, stream,
                 overrides: dict[str, Any], search: SearchConfig, service, phase: _Phases) -> SearchOutcome:
    points: list[dict[str, Any]] = []
    if resume is None and overrides.get("from_"):
        from lknas.search.seeds import seed_points

        points, skipped = seed_points(space_obj, overrides["from_"])
        for message in skipped:
            print(f"--from: skipped {message}", file=stream)
        if not points:
            raise LknasError(f"--from {overrides['from_']}: none of its architectures is in space {space_obj.name}")
        print(f"--from: {len(points)} architecture(s) evaluated first", file=stream)
        settings["from"] = str(overrides["from_"])
        store.write_settings(settings)
    train_overrides = settings["train_overrides"]
    train_cfg = space_obj.train.replace(**train_overrides)

    from lknas.data import build_data
    from lknas.train.proxy import check_curriculum

    bundle = build_data(train_cfg.dataset, resolution=train_cfg.resolution, batch_size=train_cfg.batch_size,
                        seed=train_cfg.seed, subset=train_cfg.subset)  # bad data fails before Ray, and is cached
    check_curriculum(train_cfg, bundle)
    phase("data")
    max_t = trial_epochs(train_cfg, len(bundle.train))  # a trial's reports: the schedulers' max budget
    check_scheduler(search, max_t)
    done = _searched(store)
    remaining = search.trials - done
    summary = lambda: _summary(store, space_obj, search, settings)  # noqa: E731
    from lknas.device import trial_device

    device = trial_device(search.gpus_per_trial)
    threads = max(1, int(search.cpus_per_trial))
    ctx = TrialContext(space_file=str(store.space_file.resolve()), train_overrides=train_overrides,
                       num_classes=train_cfg.num_classes or bundle.num_classes, in_chans=bundle.in_chans,
                       threads=threads, device=device, latency_threads=threads, trial_seeds=search.trial_seeds,
                       latency_service=service.socket_path if service is not None else None,
                       latency_reference_ms=_latency_reference(store, settings, train_cfg.resolution, bundle.in_chans,
                                                               device, threads))
    phase("latency_reference")
    interrupted = False
    prestart = None
    if remaining > 0:
        grid = space_obj.grid() if search.sampler == "grid" else None
        sampler = make_sampler(search.sampler, search.seed + done, len(search.objectives), search.trials, grid)
        study_name = settings["space_name"]
        storage, repaired = open_study(store, study_name, ctx, search.objectives)  # reconciled with trials.jsonl
        for note in repaired:
            print(f"resume: {note}", file=stream)
        phase("study")
        _init_ray(settings.get("address"), quiet, search.cpus_per_trial, search.gpus_per_trial)
        phase("ray_start")
        from lknas.search.monitor import SearchMonitor

        prestart = _retime_prestart(settings, search, ctx, train_cfg.resolution) if service is None else None
        monitor = SearchMonitor(store, search.objectives, search.trials, done, quiet=quiet, stream=stream,
                                summary=summary, on_tail=prestart.start if prestart is not None else None)
        seeds = f" ({search.trial_seeds} training seeds each, ranked by their mean)" if search.trial_seeds > 1 else ""
        print(f"lknas search: {space_obj.name}, {remaining} of {search.trials} trials to run{seeds}, sampler "
              f"{search.sampler}, objectives {', '.join(f'{o.name} ({o.mode})' for o in search.objectives)}; "
              f"results in {store.root}", file=stream, flush=True)
        try:
            _fit(ctx, search, storage, study_name, sampler, store, remaining, monitor, points, max_t)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            monitor.close()
            phase("trials")
    elif not settings.get("confirm_plan"):
        print(f"{store.root}: all {search.trials} trials are done", file=stream)
    searched = _searched(store) >= search.trials
    try:
        if searched and not interrupted:
            interrupted = _retime_phase(store, settings, search, ctx, train_cfg.resolution, stream, prestart, service)
            phase("retime")
    finally:
        if prestart is not None:  # started for a phase that did not run (an interrupted search)
            prestart.close()
    if searched and not interrupted:
        interrupted = _confirm_phase(store, settings, search, ctx, train_cfg.seed, quiet, stream, summary)
        phase("confirm")
    front = store.refresh(search.objectives, summary())
    phase("results")
    print(_pareto_table(front, search.objectives), file=stream)
    if interrupted or not searched:
        interrupted = True
        print(f"interrupted: {_searched(store)} of {search.trials} trials done"
              + (" (the latency front's re-timing or the Pareto set's confirm re-trainings are still to run)"
                 if searched else "")
              + f"; continue with\n  python -m lknas search --resume {store.root}", file=stream)
    print(f"results: {store.root} (trials.csv, pareto.csv, archs/, study.db, summary.txt)", file=stream)
    return SearchOutcome(store.root, store.frame(), front, interrupted, phase.seconds)


class _Phases:
    """Seconds spent in each phase of the driver: `phase("name")` closes the phase that ran since
    the previous call (or since creation)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._last
        self._last = now


def _searched(store: RunStore) -> int:
    """Finished search trials (confirm re-trainings not counted)."""
    return sum(1 for r in store.rows() if not is_confirm(r))


def _retime_skip(settings: dict[str, Any], search: SearchConfig, ctx: TrialContext) -> str | None:
    """Why the retime phase does not run ('' when it has nothing to do, None when it runs)."""
    if search.retime <= 0 or not any(o.name == "latency" for o in search.objectives):
        return ""
    if settings.get("address"):
        return ("retime: skipped: the trials ran on a Ray cluster, each timed on its own node, and this machine "
                "is not theirs")
    if ctx.device != "cpu":
        import torch

        if not torch.cuda.is_available():
            return f"retime: skipped: the trials timed on {ctx.device}, which this process does not see"
    return None


def _retime_prestart(settings: dict[str, Any], search: SearchConfig, ctx: TrialContext, resolution: int):
    """The retime phase's timer, to start when the search's tail begins (`SearchMonitor`'s
    `on_tail`); None when the phase will not run."""
    from lknas.search.retime import TimerPrestart, timer_setting

    if _retime_skip(settings, search, ctx) is not None:
        return None
    return TimerPrestart(timer_setting(ctx, resolution))


def _retime_phase(store: RunStore, settings: dict[str, Any], search: SearchConfig, ctx: TrialContext,
                  resolution: int, stream, prestart=None, service=None) -> bool:
    """Time the architectures near the latency front again on the idle node (`lknas.search.retime`),
    in the search's timing service when it has one (the process that timed its trials), else with
    `prestart`'s timer when the tail started it. True if interrupted."""
    from lknas.search.retime import run_retime, timer_setting

    skip = _retime_skip(settings, search, ctx)
    if skip is not None:
        if skip:
            print(skip, file=stream)
        return False
    if service is not None:
        service.setting = timer_setting(ctx, resolution)
    timer = service if service is not None else prestart.take() if prestart is not None else None
    try:
        run_retime(store, ctx, search.objectives, search.retime, resolution, stream=stream, timer=timer)
    except KeyboardInterrupt:
        return True
    finally:
        if timer is not None and timer is not service:
            timer.close(wait=False)  # its exit overlaps what the search does next
    return False


def _confirm_phase(store: RunStore, settings: dict[str, Any], search: SearchConfig, ctx: TrialContext,
                   base_seed: int, quiet: bool, stream, summary) -> bool:
    """Plan (once; saved in run.json) and run the Pareto set's re-trainings. True if interrupted."""
    from lknas.search.confirm import ConfirmPlan, confirm_jobs, plan_confirm, run_confirm

    saved = settings.get("confirm_plan")
    if saved is not None and saved.get("setting") == search.confirm:
        plan = ConfirmPlan(**saved)
    else:
        plan = plan_confirm(store, search.objectives, search.confirm, base_seed, trial_seeds=search.trial_seeds)
        settings["confirm_plan"] = plan.to_dict()
        store.write_settings(settings)
    jobs = confirm_jobs(store, plan)
    print(f"confirm: {plan.reason}" + (f"; {len(jobs)} re-training(s) to run" if jobs else ""), file=stream)
    if not jobs:
        return False
    _init_ray(settings.get("address"), quiet, search.cpus_per_trial, search.gpus_per_trial)
    try:
        run_confirm(store, jobs, ctx, search.objectives, search.cpus_per_trial, search.gpus_per_trial,
                    search.max_concurrent, quiet=quiet, stream=stream, summary=summary)
    except KeyboardInterrupt:
        return True
    return False


def _fit(ctx, search: SearchConfig, storage, study_name, sampler, store: RunStore, remaining: int,
         monitor, points: list[dict[str, Any]], max_t: int) -> None:
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    import warnings

    from lknas.search.searcher import LknasOptunaSearch

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # verbose=0 then prints nothing: our monitor reports
    # failed / infeasible trials report no accuracy; LknasOptunaSearch handles them by status
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"

    # the define-by-run function builds each sample once to check the budget before training:
    # that is deliberate (an infeasible sample then costs no worker), so Ray's hint is noise here
    warnings.filterwarnings("ignore", message="Define-by-run function passed", category=UserWarning)
    from lknas.search.trial import DefineByRun, run_trial

    metrics = [metric_of(o) for o in search.objectives]
    modes = [o.mode for o in search.objectives]
    ray_storage = store.read_settings().get("ray_storage") or str((store.root / "ray").resolve())
    single = len(metrics) == 1
    searcher = LknasOptunaSearch(
        space=DefineByRun(ctx), metric=metrics[0] if single else metrics, mode=modes[0] if single else modes,
        sampler=sampler, storage=storage, study_name=study_name, objectives=search.objectives,
        points_to_evaluate=points or None,
    )
    from lknas.search.cluster import trial_slots

    slots = trial_slots(search.cpus_per_trial, search.gpus_per_trial)
    concurrency = search.max_concurrent or slots
    scheduler = make_scheduler(search, max_t, store.rows())  # at a resume, moasha's rungs hold the log's trials
    trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=ctx),
                                    {"cpu": search.cpus_per_trial, "gpu": search.gpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher,
                                                                  max_concurrent=suggest_ahead(concurrency, slots)),
                                    scheduler=scheduler, num_samples=remaining,
                                    time_budget_s=search.time_budget, reuse_actors=True,
                                    trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(name=f"{store.root.name}-{int(time.time())}", storage_path=ray_storage,
                                  callbacks=[monitor], verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )
    tuner.fit()


def suggest_ahead(concurrency: int, slots: int) -> int:
    """Trials the searcher may have out at once: one more than run at once when the resources
    (`slots` trials fit) are what bounds them, so the next trial is sampled (its model built and
    counted, in the driver) while the running ones train and takes a freed slot at once; Ray Tune
    holds it pending until then. When `--max-concurrent` is below `slots`, that limit binds exactly."""
    return concurrency + 1 if concurrency >= slots else concurrency


def _trial_dirname(trial) -> str:
    return f"trial-{trial.config.get(NUMBER_KEY, 'x')}-{trial.trial_id}"


def _summary(store: RunStore, space: SearchSpace, search: SearchConfig, settings: dict[str, Any]) -> str:
    df = store.frame()
    searched = search_rows(df)
    counts = searched["status"].value_counts().to_dict() if not searched.empty else {}
    front = store.pareto(search.objectives, df)
    lines = [
        f"lknas search run {store.root}",
        f"space: {space.name}, sampler {search.sampler}, scheduler {search.scheduler}, seed {search.seed}",
        f"objectives: {', '.join(f'{o.name} ({o.mode})' for o in search.objectives)}",
        f"trials: {len(searched)} of {search.trials} finished: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
        f"Pareto set: {len(front)} architectures (archs/*.yaml)",
    ]
    if "latency_timings" in df.columns:
        timed = df[df["latency_timings"] > 0].drop_duplicates("hash")
        if not timed.empty:
            lines.append(f"retime: {len(timed)} architecture(s) near the latency front timed again on the idle node "
                         f"({int(timed['latency_timings'].max())} round(s), retime.json); latency_ms is their mean")
    plan = settings.get("confirm_plan")
    if plan:
        lines.append(f"confirm: {plan.get('reason', '')}")
    if not front.empty and (front.get("seeds", pd.Series([1])) > 1).any():
        lines.append(_pareto_table(front, search.objectives))
    failed = df[df["status"].isin(FAILED)] if not df.empty else df
    for _, row in failed.iterrows():
        lines.append(f"  trial {row['trial']} {row['status']}: {row.get('error') or ''}")
    return "\n".join(lines) + "\n"


def _pareto_table(front: pd.DataFrame, objectives: tuple[Objective, ...]) -> str:
    """The front as text; with confirm seeds, accuracy as mean +- std and the noise verdict."""
    if front.empty:
        return "Pareto front: empty (no trial finished with status ok)"
    table = front.copy()
    cols = ["trial", "hash"] + [metric_of(o) for o in objectives]
    if "seeds" in table.columns and (table["seeds"] > 1).any():
        table["accuracy (mean +- std)"] = [f"{m:.2f} +- {s:.2f} ({int(n)} seeds)" if n > 1 else f"{m:.2f} (1 seed)"
                                           for m, s, n in zip(table["accuracy_mean"], table["accuracy_std"],
                                                              table["seeds"])]
        table["noise"] = [note or "clear of the noise" if flag is not None else "" for flag, note in
                          zip(table["within_noise"], table["noise_note"])]
        cols += ["accuracy (mean +- std)", "noise"]
    if "latency_timings" in table.columns and (table["latency_timings"] > 1).any():
        table["latency (mean +- std)"] = [f"{m:.2f} +- {s:.2f} ms ({int(n)} timings)" if n > 1 else ""
                                          for m, s, n in zip(table["latency_ms"], table["latency_std_ms"],
                                                             table["latency_timings"])]
        cols += ["latency (mean +- std)"]
    cols += ["summary"]
    cols = [c for c in cols if c in table.columns]
    return "Pareto front:\n" + table[cols].to_string(index=False)
