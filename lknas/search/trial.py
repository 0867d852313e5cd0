"""One search trial, both halves.

On the driver, `DefineByRun` asks Optuna for every active dimension of the space, builds the model
once to count params and FLOPs, and records the constraint violations on the Optuna trial (so the
sampler learns where the budget lies) before any worker starts. In a Ray worker, `run_trial`
rebuilds the same ArchConfig from the sampled parameters (`optuna.trial.FixedTrial`), skips
training when the sample is infeasible, else trains and measures it, reporting every epoch.

Both halves do their work inside `lknas.quiet.working()`, and the latency is timed under
`lknas.quiet.exclusive()`: no trial's deploy model is timed while another trial (or the driver's
counting) computes on the same node. A CPU trial times in a fresh process (`deploy_latency`: the
search's timing service, else one of its worker's own), not in the worker that has just trained.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import optuna

from lknas import quiet
from lknas.arch import ArchConfig
from lknas.search.objectives import effective_counts
from lknas.search.samplers import record_constraints
from lknas.search.store import PARAM_PREFIX
from lknas.space.configs import Constraints, TrainConfig
from lknas.status import TrialStatus

__all__ = ["TrialContext", "DefineByRun", "run_trial", "placement", "trial_epochs", "deploy_latency", "latency_process",
           "timing_setting", "INTERNAL_KEYS", "CURVE_KEY"]

NUMBER_KEY = "lknas.trial"
INFEASIBLE_KEY = "lknas.infeasible"
COUNTS_KEY = "lknas.counts"  # params/FLOPs counted on the driver, at the constraints' resolution
CONFIRMS_KEY = "lknas.confirms"  # a confirm re-training: the search trial it repeats
SEED_KEY = "lknas.seed"  # its training seed
INTERNAL_KEYS = (NUMBER_KEY, INFEASIBLE_KEY, COUNTS_KEY, CONFIRMS_KEY, SEED_KEY)
CURVE_KEY = "accuracy_curve"  # the accuracy after each epoch so far, in every report of a trained trial
LATENCY_REPEATS = 100  # 100 batch-1 runs per layout, each paired with the reference net: under a second
THROUGHPUT_BATCH = 32  # images per forward for the throughput column


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a run shares; pickled to the Ray workers."""

    space_file: str
    train_overrides: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 2
    in_chans: int = 3
    threads: int = 1
    device: str = "cpu"
    latency_threads: int | None = 1
    erf: bool = True
    latency_reference_ms: float | None = None  # the reference net's time before the first trial (CPU runs)
    trial_seeds: int = 1  # training seeds per search trial (a confirm re-training trains one)
    latency_service: str | None = None  # the node's timing service (its Unix socket), where the driver started one


def _space(ctx: TrialContext):
    from lknas.space import load_space

    return load_space(ctx.space_file)


def _train_cfg(space, trial: optuna.trial.BaseTrial, ctx: TrialContext) -> TrainConfig:
    cfg = space.suggest_train(trial) if not space.train.is_fixed else space.train
    return cfg.replace(**ctx.train_overrides)


def constraint_values(constraints: Constraints, counts: dict[str, Any]) -> dict[str, float]:
    """One value per limit (`max_params`, ...), <= 0 when satisfied (Optuna's convention),
    relative to the limit."""
    values = {}
    for what in ("params", "flops"):
        value = counts[f"{what}_effective"]
        hi, lo = getattr(constraints, f"max_{what}"), getattr(constraints, f"min_{what}")
        if hi is not None:
            values[f"max_{what}"] = (value - hi) / hi
        if lo is not None:
            values[f"min_{what}"] = (lo - value) / max(lo, 1)
    return values


class DefineByRun:
    """Optuna define-by-run search space for Ray's OptunaSearch, built from a space file."""

    def __init__(self, ctx: TrialContext):
        self.ctx = ctx
        self.space = _space(ctx)

    def __call__(self, trial: optuna.trial.Trial) -> dict[str, Any]:
        from lknas.measure.trial import measure_static

        arch = self.space.suggest(trial)
        cfg = _train_cfg(self.space, trial, self.ctx)
        del cfg  # searched train values are asked above so that Optuna records them
        trial.set_user_attr("hash", arch.hash())
        trial.set_user_attr("summary", arch.summary())
        constraints = self.space.constraints
        try:
            with quiet.working():
                counts = effective_counts(measure_static(arch, constraints.resolution, self.ctx.num_classes,
                                                         self.ctx.in_chans))
        except Exception:  # the worker builds it again and records the error as the trial's
            return {NUMBER_KEY: trial.number, INFEASIBLE_KEY: ""}
        reasons = constraints.violations(counts["params_effective"], counts["flops_effective"])
        record_constraints(trial, constraint_values(constraints, counts))
        counts["resolution"] = constraints.resolution
        return {NUMBER_KEY: trial.number, INFEASIBLE_KEY: "; ".join(reasons), COUNTS_KEY: counts}


def trial_identity(arch: ArchConfig, params: dict[str, Any], number: int) -> dict[str, Any]:
    row = {"trial": number, "hash": arch.hash(), "summary": arch.summary(), "arch_yaml": arch.to_yaml()}
    row.update({f"{PARAM_PREFIX}{k}": v for k, v in params.items()})
    return row


def run_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """Ray Tune function trainable: train and measure one sampled architecture."""
    import warnings

    import torch

    from lknas.ops.allocator import keep_freed_memory

    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")  # fvcore's tracer
    config = dict(config)
    number = int(config.pop(NUMBER_KEY, -1))
    infeasible = config.pop(INFEASIBLE_KEY, "")
    counts = config.pop(COUNTS_KEY, None)
    confirms, seed = config.pop(CONFIRMS_KEY, None), config.pop(SEED_KEY, None)
    params = {k: v for k, v in config.items() if k not in INTERNAL_KEYS}
    torch.set_num_threads(max(1, ctx.threads))
    keep_freed_memory()
    base: dict[str, Any] = {"trial": number, "status": "running", **placement(ctx.device)}
    if confirms is not None:
        base.update(phase="confirm", confirms=int(confirms))
    try:
        with quiet.working():
            _run_sampled(params, number, infeasible, counts, ctx, base, seed)
    except Exception as err:  # a broken trial is recorded, the search goes on
        report({**base, "status": TrialStatus.ERROR.value, "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc(limit=8)})


def _run_sampled(params: dict[str, Any], number: int, infeasible: str, counts: dict | None, ctx: TrialContext,
                 base: dict[str, Any], seed: int | None = None) -> None:
    space = _space(ctx)
    fixed = optuna.trial.FixedTrial(params)
    arch = space.suggest(fixed)
    cfg = _train_cfg(space, fixed, ctx)
    if seed is not None:  # a confirm re-training: another initialization and order, the same data
        cfg = cfg.replace(seed=int(seed), data_seed=cfg.data_set_seed)
    base.update(trial_identity(arch, params, number))
    base["seed"] = cfg.seed
    # what the trial trained with, so that its archs/*.yaml file repeats it (`lknas train-proxy --arch`)
    base["train"] = train_record(cfg)
    base["train_threads"] = max(1, ctx.threads)
    base["num_classes"], base["in_chans"] = ctx.num_classes, ctx.in_chans  # what its counts and latency built
    start = time.perf_counter()
    base.update(_static(arch, cfg, ctx, counts))
    base["static_time"] = time.perf_counter() - start  # counting and deploy latency, before training
    if infeasible:
        report({**base, "status": TrialStatus.INFEASIBLE.value, "reason": infeasible, "accuracy": 0.0, "erf": 0.0})
        return
    _train_and_report(arch, cfg, ctx, base, seeds=1 if seed is not None else ctx.trial_seeds)


def train_record(cfg: TrainConfig) -> dict[str, Any]:
    """The training settings a trial records (None left out), so that its row repeats it."""
    return {k: v for k, v in cfg.to_dict().items() if v is not None}


def placement(device: str) -> dict[str, Any]:
    """Where a trial runs, for its row: `node` (the Ray node id), `node_ip`, `gpu_ids` (the GPUs
    Ray gave it, comma-separated; '' for none), `device` (what it trains on) and `started_at`
    (Unix time), so a multi-node run shows which node trained what, and when."""
    import ray

    out: dict[str, Any] = {"device": device, "started_at": round(time.time(), 3)}
    if ray.is_initialized():  # always, in a Ray worker
        out.update(node=ray.get_runtime_context().get_node_id(), node_ip=ray.util.get_node_ip_address(),
                   gpu_ids=",".join(str(g) for g in ray.get_gpu_ids()))
    return out


def report(metrics: dict[str, Any]) -> None:
    """`tune.report` without holding the node's work lock: Ray's function trainables wait in it
    for the driver, and the driver may be waiting for a timing (see `lknas.quiet.idle`)."""
    from ray import tune

    with quiet.idle():
        tune.report(metrics)


def _static(arch: ArchConfig, cfg: TrainConfig, ctx: TrialContext, counts: dict | None) -> dict[str, Any]:
    """Counts at the training resolution (the driver's when it counted at that resolution) and
    the deploy latency: known before training."""
    from lknas.measure.trial import measure_static

    if counts is not None and counts.get("resolution") == cfg.resolution:
        out = {k: v for k, v in counts.items() if k != "resolution"}
    else:
        out = effective_counts(measure_static(arch, cfg.resolution, ctx.num_classes, ctx.in_chans))
    lat = deploy_latency(arch, cfg.resolution, ctx)
    out.update(latency_ms=lat["latency_ms"], latency_raw_ms=lat["raw_ms"], throughput=lat["throughput"],
               latency_device=lat["device"], latency_threads=lat["threads"], latency_method=lat["method"],
               latency_wait=lat["waited_s"], latency_layout=lat["layout"], latency_foreign=lat["foreign_load"], latency_on_cpu=lat["on_cpu"],
               latency_attempts=lat["attempts"], latency_process=lat["process"])
    return out


LATENCY_PROCESS_ENV = "LKNAS_LATENCY_PROCESS"  # child (the default) | trial: where CPU trials time their deploy model
_TIMERS: dict[str, Any] = {}  # this worker's timing processes, one per setting


def latency_process(ctx: TrialContext) -> str:
    """Where a trial times its deploy model: `child`, a fresh Python process (CPU trials; the
    driver's timing service where it started one, else one the worker starts and keeps for its
    trials: `lknas.measure.isolated`), or `trial`, the trial's own process (GPU trials, and CPU
    ones with LKNAS_LATENCY_PROCESS=trial). A Ray worker that has just trained a net timed the
    next one 4-5% slow (median over a run; `benchmarks/latency_repeatability.py`)."""
    import os

    from lknas.errors import LknasError

    if ctx.device != "cpu":
        return "trial"
    choice = os.environ.get(LATENCY_PROCESS_ENV, "child").strip().lower() or "child"
    if choice not in ("child", "trial"):
        raise LknasError(f"{LATENCY_PROCESS_ENV}={choice!r}: use 'child' (time in a fresh process, the default) "
                         "or 'trial' (time in the trial's process)")
    return choice


def timing_setting(ctx: TrialContext, resolution: int) -> dict[str, Any]:
    """How a trial times its deploy model (`lknas.measure.isolated.ChildTimer`'s setting)."""
    return {"resolution": resolution, "threads": ctx.latency_threads, "reference_ms": ctx.latency_reference_ms,
            "repeats": LATENCY_REPEATS, "num_classes": ctx.num_classes, "in_chans": ctx.in_chans,
            "device": "cpu" if ctx.device == "cpu" else ctx.device, "throughput_batch": THROUGHPUT_BATCH}


def deploy_latency(arch: ArchConfig, resolution: int, ctx: TrialContext) -> dict[str, Any]:
    """`measure_latency`'s answer for the trial's deploy model, timed where `latency_process`
    says, plus `process`: `service` (the node's timing service, `ctx.latency_service`), `child`
    (the worker's own timing process: no service, or it is on another node or failed) or `trial`.
    The worker gives up its share of the node while another process times (that timing's
    exclusive lock would wait for it); a failure falls back to the next place, with a warning."""
    import os
    import sys

    from lknas.errors import LknasError
    from lknas.measure import measure_latency

    setting = timing_setting(ctx, resolution)
    if latency_process(ctx) == "child":
        if ctx.latency_service and os.path.exists(ctx.latency_service):
            from lknas.measure.isolated import request_timing

            try:
                with quiet.idle():
                    return {**request_timing(ctx.latency_service, setting, arch.to_yaml()), "process": "service"}
            except LknasError as err:
                print(f"lknas: {err}; timing this trial's deploy model in the worker's own process", file=sys.stderr)
        key = repr(sorted(setting.items()))
        try:
            timer = _TIMERS.get(key)
            if timer is None:
                from lknas.measure.isolated import ChildTimer

                timer = _TIMERS[key] = ChildTimer(setting)
            with quiet.idle():
                return {**timer(arch.to_yaml()), "process": "child"}
        except (LknasError, OSError) as err:
            _TIMERS.pop(key, None)
            print(f"lknas: {err}; timing this trial's deploy model in its own process", file=sys.stderr)
    lat = measure_latency(arch, resolution, threads=setting["threads"], num_classes=ctx.num_classes,
                          in_chans=ctx.in_chans, device=setting["device"], repeats=LATENCY_REPEATS,
                          throughput_batch=THROUGHPUT_BATCH, reference_ms=ctx.latency_reference_ms)
    return {**lat, "process": "trial"}


def trial_epochs(cfg: TrainConfig, batches_per_epoch: int) -> int:
    """How many epochs (reports) a trial trains: `steps` rounded up to whole epochs, else `epochs`,
    as the proxy trainer counts them; a scheduler's max budget."""
    per_epoch = max(1, batches_per_epoch)
    return -(-(cfg.steps or cfg.epochs * per_epoch) // per_epoch)


def _train_and_report(arch: ArchConfig, cfg: TrainConfig, ctx: TrialContext, base: dict[str, Any],
                      seeds: int = 1) -> None:
    """Train `seeds` runs of the architecture one after the other (training seeds `cfg.seed`,
    `cfg.seed + 1`, ...; the same synthetic data set, as a confirm re-training keeps it) and report
    their mean accuracy. Per-epoch reports come from the last run, with each epoch's accuracy
    averaged over the runs, so a scheduler ranks the same mean; the ERF, the trained weights'
    sparse counts and the layout are the last run's."""
    from lknas.data import build_data
    from lknas.measure.trial import measure_trial

    runs: list[dict[str, Any]] = []
    curves: list[list[float]] = []
    data_time = 0.0
    for i in range(seeds):
        run_cfg = cfg if i == 0 else cfg.replace(seed=cfg.seed + i, data_seed=cfg.data_set_seed)
        last = i == seeds - 1
        start = time.perf_counter()
        bundle = build_data(run_cfg.dataset, resolution=run_cfg.resolution, batch_size=run_cfg.batch_size,
                            seed=run_cfg.data_set_seed, subset=run_cfg.subset, device=ctx.device,
                            order_seed=run_cfg.batch_order_seed)
        data_time += time.perf_counter() - start
        epochs = trial_epochs(run_cfg, len(bundle.train))
        curve: list[float] = []  # accuracy after each epoch: a scheduler's rungs are rebuilt from it at resume
        curves.append(curve)

        def per_epoch_report(metrics: dict[str, Any], curve=curve, last=last, epochs=epochs) -> None:
            curve.append(float(metrics["accuracy"]))
            if last and metrics["epoch"] < epochs:  # the last epoch is reported once measured in full
                mean = _mean_curve(curves)[:len(curve)]  # the runs before have trained every epoch already
                report({**base, "data_time": data_time, "epoch": metrics["epoch"], "accuracy": mean[-1],
                        "val_loss": metrics["val_loss"], "train_loss": metrics["train_loss"], CURVE_KEY: mean})

        metrics = measure_trial(arch, run_cfg, bundle, report=per_epoch_report, device=ctx.device, latency=False,
                                erf=ctx.erf and last, erf_map=ctx.erf and last)
        runs.append(effective_counts(metrics))
        if metrics.get("status") != TrialStatus.OK:  # diverged, out of memory, stopped: the trial ends with it
            break
    metrics = _combine_runs(runs, cfg.seed) if len(runs) > 1 else runs[0]
    base["data_time"] = data_time
    final = {**base, **metrics, "epoch": metrics.get("epochs", 0), CURVE_KEY: _mean_curve(curves[:len(runs)])}
    if metrics.get("layout"):  # the layout it trained in, so that `lknas train-proxy --arch` repeats it exactly
        final["train"] = {**base["train"], "layout": metrics["layout"]}
    if final["status"] == TrialStatus.STOPPED:  # by the scheduler: a search calls that truncated
        final["status"] = TrialStatus.TRUNCATED.value
    report(final)


def _mean_curve(curves: list[list[float]]) -> list[float]:
    """Each epoch's accuracy averaged over the runs that reached it."""
    longest = max((len(c) for c in curves), default=0)
    return [sum(c[e] for c in curves if len(c) > e) / sum(1 for c in curves if len(c) > e) for e in range(longest)]


MEAN_OVER_RUNS = ("accuracy", "val_loss", "train_loss")
SUMMED_OVER_RUNS = ("train_time", "measure_time")


def _combine_runs(runs: list[dict[str, Any]], first_seed: int) -> dict[str, Any]:
    """One trial's metrics from several runs: the last run's, with `accuracy`, `val_loss` and
    `train_loss` averaged, the times summed, and `accuracy_seeds` / `train_seeds` listing each
    run's accuracy and seed. A run that did not finish gives the trial its status (the mean is
    then over the runs so far)."""
    out = dict(runs[-1])
    for key in MEAN_OVER_RUNS:
        values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        if values:
            out[key] = sum(values) / len(values)
    for key in SUMMED_OVER_RUNS:
        out[key] = sum(r.get(key) or 0.0 for r in runs)
    out["accuracy_seeds"] = [r.get("accuracy") for r in runs]
    out["train_seeds"] = [first_seed + i for i in range(len(runs))]
    return out
