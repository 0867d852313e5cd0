"""`train_proxy`: train one architecture briefly on a proxy task and report its accuracy.

The unit of work of a search trial: timm's AdamW + cosine (with warm-up), label smoothing, drop
path, SLaK-style dynamic sparsity when the architecture asks for it, AMP on CUDA, the memory layout
(NCHW or channels_last) measured fastest for the model (`lknas.measure.layout`), a budget in
epochs or steps plus an optional time limit, an optional curriculum (the first
`curriculum_fraction` of the steps on an easier data set, or with `curriculum_ramp` blended into
the full task), evaluation each epoch and a `report` callback per epoch (the search's early-stopping
hook), and with `ema_decay` the evaluation of an exponential moving average of the weights (timm's
ModelEmaV3) instead of the last ones. Seeded and deterministic on CPU for a given layout (pin it with
LKNAS_LAYOUT to repeat a run in another process).

A run never raises for a bad trial: NaN/inf loss ends it with status `diverged`, running out of
memory with status `oom`; the result says so and carries the message.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lknas import quiet
from lknas.arch import ArchConfig
from lknas.measure.layout import resolve_layout, to_layout
from lknas.models import build_model
from lknas.space.budget import check_arch_budget
from lknas.space.configs import TrainConfig
from lknas.status import PROXY_STATUSES, TrialStatus
from lknas.train.recipe import backward_and_step, fitted_warmup, make_loss, make_optimizer, make_scheduler

__all__ = ["train_proxy", "evaluate", "ProxyResult", "STATUSES"]

STATUSES = PROXY_STATUSES  # what a proxy run ends with (`lknas.status.TrialStatus`)

Report = Callable[[dict[str, Any]], Any]


@dataclass
class ProxyResult:
    """What one proxy run measured. `accuracy` is top-1 in percent on the validation split."""

    status: str
    accuracy: float | None = None
    val_loss: float | None = None
    train_loss: float | None = None
    epochs: int = 0
    steps: int = 0
    train_time: float = 0.0
    time_limited: bool = False
    error: str | None = None
    layout: str | None = None  # the memory layout it trained in: nchw | channels_last
    layout_ms: dict[str, float] = field(default_factory=dict)  # a step's ms per layout when measured
    history: list[dict[str, Any]] = field(default_factory=list)
    model: nn.Module | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready metrics (the model is left out)."""
        return {k: v for k, v in self.__dict__.items() if k != "model"}


class _Diverged(Exception):
    pass


def _is_oom(err: BaseException) -> bool:
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    text = str(err).lower()
    return isinstance(err, (RuntimeError, MemoryError)) and (
        isinstance(err, MemoryError) or "out of memory" in text or "can't allocate memory" in text
    )


def _device(device: str | torch.device | None) -> torch.device:
    from lknas.device import resolve_device

    return resolve_device(device)


def _autocast(device: torch.device) -> tuple[contextlib.AbstractContextManager, torch.dtype | None]:
    """bf16 autocast on CUDA where supported, else fp16 (with a grad scaler); none on CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext(), None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype), dtype


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable, device: torch.device | str = "cpu",
             loss_fn: nn.Module | None = None, layout: str | None = None) -> tuple[float, float]:
    """(top-1 accuracy in percent, mean cross-entropy) of `model` in eval mode over `batches`,
    inputs in `layout` (default: channels_last on CUDA, NCHW elsewhere)."""
    device = torch.device(device)
    layout = layout or ("channels_last" if device.type == "cuda" else "nchw")
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    was_training = model.training
    model.eval()
    correct = total = 0
    loss_sum = 0.0
    amp, _ = _autocast(device)
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        x = to_layout(x, layout)
        with amp:
            logits = model(x)
        loss_sum += float(loss_fn(logits.float(), y)) * y.numel()
        correct += int((logits.argmax(1) == y).sum())
        total += y.numel()
        quiet.yield_point()
    model.train(was_training)
    if total == 0:
        return float("nan"), float("nan")
    return 100.0 * correct / total, loss_sum / total


def _make_sparsity(model: nn.Module, arch: ArchConfig, total_steps: int, optimizer, first_batch):
    spec = arch.sparsity
    if spec is None or spec.density >= 1.0:
        return None
    from lknas.sparsity import DynamicSparsity

    return DynamicSparsity(model, spec, total_steps=total_steps, optimizer=optimizer, snip_batch=first_batch)


def _load_data(data: Any, cfg: TrainConfig, device: torch.device):
    if data is None or isinstance(data, str):
        from lknas.data import build_data

        return build_data(data or cfg.dataset, resolution=cfg.resolution, batch_size=cfg.batch_size,
                          seed=cfg.data_set_seed, order_seed=cfg.batch_order_seed,
                          subset=cfg.subset, device=str(device))
    return data


def curriculum_steps(cfg: TrainConfig, total_steps: int) -> int:
    """How many of `total_steps` train on `cfg.curriculum` (0 without one)."""
    if not cfg.curriculum:
        return 0
    return min(total_steps, max(1, round(cfg.curriculum_fraction * total_steps)))


def _curriculum_data(cfg: TrainConfig, bundle: Any, dev: torch.device | str, steps: int) -> Any:
    """The easier data set `cfg.curriculum`, drawn like the main set (same resolution, batch size,
    data and order seeds; a synthetic set at exactly `steps` batches); DataError unless it has the
    main set's classes and channels."""
    from lknas.data import SYNTHETIC, DataError, build_data, parse_spec

    synthetic = parse_spec(cfg.curriculum).kind in SYNTHETIC
    easy = build_data(cfg.curriculum, resolution=getattr(bundle, "resolution", cfg.resolution),
                      batch_size=cfg.batch_size, seed=cfg.data_set_seed, order_seed=cfg.batch_order_seed,
                      device=str(dev),
                      train_size=steps * cfg.batch_size if synthetic else None,
                      val_size=cfg.batch_size if synthetic else None)
    for what in ("num_classes", "in_chans"):
        if getattr(easy, what) != getattr(bundle, what):
            raise DataError(f"train.curriculum {cfg.curriculum!r} has {what} {getattr(easy, what)} but the data set "
                            f"has {getattr(bundle, what)}; use an easier form of the same task")
    return easy


def check_curriculum(cfg: TrainConfig, bundle: Any) -> None:
    """Raise DataError now, before any trial starts, if `cfg.curriculum` cannot serve `bundle`."""
    if cfg.curriculum:
        _curriculum_data(cfg, bundle, "cpu", 1)


def _curriculum_batches(cfg: TrainConfig, bundle: Any, dev: torch.device, steps: int) -> Iterator:
    """The first `steps` training batches: from `cfg.curriculum`, cycled if it is a real data set."""
    if steps == 0:
        return iter(())
    easy = _curriculum_data(cfg, bundle, dev, steps)

    def cycle() -> Iterator:
        while True:
            yield from easy.train

    return itertools.islice(cycle(), steps)


def _ramped(easy: Iterator, train: Iterable, steps: int) -> Iterator:
    """`train.curriculum_ramp`: the first epoch's batches. `steps` batches mixed from the easier set
    and the full task, the full task's share of batch t being t / steps (each full-task batch drawn
    gives that many samples; a training split shorter than the ramp starts over), then the rest of
    the full task's pass."""
    main = iter(train)
    for t, (xe, ye) in enumerate(easy):
        batch = next(main, None)
        if batch is None:
            main = iter(train)
            batch = next(main)
        xm, ym = batch
        n = round(len(ye) * t / steps)
        yield (torch.cat([xm[:n].to(xe.device), xe[n:]]), torch.cat([ym[:n].to(ye.device), ye[n:]]))
    yield from main


def train_proxy(
    arch: ArchConfig,
    train_cfg: TrainConfig | None = None,
    data: Any = None,
    report: Report | None = None,
    *,
    device: str | torch.device | None = None,
    progress: bool = False,
    keep_model: bool = False,
    layout: str | None = None,
) -> ProxyResult:
    """Train `arch` under `train_cfg` on `data` and evaluate it after every epoch.

    Args:
        arch: the architecture (a fixed `ArchConfig`: `SearchSpace.sample` or `load_arch`).
        train_cfg: the recipe (data set, budget, optimizer, curriculum, seeds); None: the defaults.
        data: a `lknas.data.DataBundle` (anything with `train`, `val`, `num_classes`, `in_chans`),
            a data-set name, or None for `train_cfg.dataset`.
        report: called after each epoch with `epoch`, `step`, `accuracy`, `val_loss`,
            `train_loss`, `time`; a truthy return value stops the run (status `stopped`).
        device: cpu | cuda | cuda:N | a torch.device; None: CUDA when available, else the CPU.
        progress: print a line per epoch to stderr.
        keep_model: keep the trained model on the result (`model`; ok and stopped runs only).
        layout: nchw | channels_last | auto (a training step timed in both, the faster used); None
            takes `train_cfg.layout`, and its `auto` LKNAS_LAYOUT. The result records the layout
            used (`layout`, `layout_ms`).

    Returns:
        A `ProxyResult`; `status` is one of `lknas.status.PROXY_STATUSES` (a diverged or
        out-of-memory run is a result, not an exception).

    Raises:
        ValueError: `train_cfg` still has searched values (lr / weight_decay domains).
        LknasError: bad data (`DataError`), an unknown or unusable device, or an architecture
            whose estimated memory exceeds the budget at this resolution and batch (before the model
            is built).
    """
    cfg = train_cfg or TrainConfig()
    if not cfg.is_fixed:
        raise ValueError("train_cfg has searched values (lr / weight_decay domains); sample them first")
    dev = _device(device)
    torch.manual_seed(cfg.seed)
    bundle = _load_data(data, cfg, dev)
    num_classes = cfg.num_classes or bundle.num_classes
    check_arch_budget(arch, getattr(bundle, "resolution", cfg.resolution), cfg.batch_size, num_classes=num_classes,
                      in_chans=bundle.in_chans)  # LknasError before the model is built

    result = ProxyResult(status=TrialStatus.OK.value)
    start = time.perf_counter()
    try:
        model = build_model(arch, num_classes=num_classes, in_chans=bundle.in_chans).to(dev)
        if cfg.zero_init_last:
            from lknas.models.blocks import zero_init_last

            zero_init_last(model)
        pinned = layout if layout is not None else (cfg.layout if cfg.layout != "auto" else None)
        result.layout, result.layout_ms = _training_layout(pinned, model, arch, cfg, bundle, dev)
        to_layout(model, result.layout)
        model = _train_loop(model, arch, cfg, bundle, dev, report, progress, result, start)
    except _Diverged as err:
        result.status, result.error = TrialStatus.DIVERGED.value, str(err)
    except (RuntimeError, MemoryError) as err:
        if not _is_oom(err):
            raise
        result.status, result.error = TrialStatus.OOM.value, f"out of memory: {str(err).splitlines()[0]}"
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    result.train_time = time.perf_counter() - start
    if keep_model and TrialStatus(result.status).trained:
        result.model = model
    return result


def _training_layout(layout: str | None, model: nn.Module, arch: ArchConfig, cfg: TrainConfig, bundle: Any,
                     dev: torch.device) -> tuple[str, dict[str, float]]:
    """The layout to train in, measured on a training step of a batch of noise (a generator of
    its own: the run's random stream is not touched)."""
    res = getattr(bundle, "resolution", cfg.resolution)
    noise = torch.randn(cfg.batch_size, bundle.in_chans, res, res, generator=torch.Generator().manual_seed(0))
    amp, _ = _autocast(dev)
    with amp:
        return resolve_layout(layout, model, noise.to(dev), train=True, key=("train", arch.hash()))


class RestartAt:
    """`train.schedule: restart`: the first scheduler until update `switch` (the curriculum's
    end), then a second one (made then, from the peak learning rate) over the remaining updates:
    the full task starts at the full rate instead of at the tail of one long cosine."""

    def __init__(self, switch: int, first, make_second):
        self.switch, self.first, self._make_second, self.second = switch, first, make_second, None

    def step_update(self, num_updates: int) -> None:
        if num_updates < self.switch:
            self.first.step_update(num_updates)
            return
        if self.second is None:
            self.second = self._make_second()
        self.second.step_update(num_updates - self.switch)


def _masked_ema(ema, sparsity) -> nn.Module:
    """The EMA model with the sparse layers' current masks applied: the average keeps a weight the
    masks have since pruned, and the network evaluated (and counted) is the sparse one."""
    if sparsity is not None:
        params = dict(ema.module.named_parameters())
        with torch.no_grad():
            for name, mask in sparsity.masks.items():
                params[name].mul_(mask.to(params[name].dtype))
    return ema.module


def _train_loop(model, arch, cfg, bundle, dev, report, progress, result, start) -> nn.Module:
    """Train `model` in place; returns the network evaluated: `model`, or its EMA (`cfg.ema_decay`)."""
    per_epoch = len(bundle.train)
    if per_epoch == 0:
        raise ValueError(f"the training split of {getattr(bundle, 'name', 'the data')} has fewer samples than "
                         f"one batch ({cfg.batch_size}); lower train.batch_size")
    total_steps = cfg.steps or cfg.epochs * per_epoch
    epochs = math.ceil(total_steps / per_epoch)
    optimizer = make_optimizer(model, cfg.optimizer, float(cfg.lr), float(cfg.weight_decay))
    switch = curriculum_steps(cfg, total_steps)
    if cfg.schedule == "restart" and 0 < switch < total_steps:
        scheduler = RestartAt(switch, make_scheduler(optimizer, 1, fitted_warmup(cfg.warmup_epochs, switch / per_epoch),
                                                     switch), lambda: make_scheduler(optimizer, 1, 0.0,
                                                                                    total_steps - switch))
    else:
        scheduler = make_scheduler(optimizer, epochs, fitted_warmup(cfg.warmup_epochs, total_steps / per_epoch),
                                   per_epoch)
    loss_fn = make_loss(cfg.label_smoothing)
    amp, amp_dtype = _autocast(dev)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    sparsity = ema = None
    evaluated = model
    step = 0
    easy = _curriculum_batches(cfg, bundle, dev, switch)
    for epoch in range(epochs):
        model.train()
        loss_sum, n_seen = 0.0, 0
        if epoch == 0 and cfg.curriculum_ramp:  # the easier set blended into the full task, then the rest of it
            batches = _ramped(easy, bundle.train, switch)
        else:
            batches = itertools.chain(easy, bundle.train) if epoch == 0 else bundle.train  # the easier set first
        for x, y in batches:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            x = to_layout(x, result.layout)
            if sparsity is None and step == 0:
                sparsity = _make_sparsity(model, arch, total_steps, optimizer, (x, y))
                if cfg.ema_decay:  # after the initial masks: the average starts from the sparse network
                    from timm.utils import ModelEmaV3

                    ema = ModelEmaV3(model, decay=cfg.ema_decay)
            with amp:
                loss = loss_fn(model(x), y)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise _Diverged(f"loss became {loss_value} at step {step} (epoch {epoch}); "
                                f"lower train.lr (now {cfg.lr:g}) or add warm-up")
            backward_and_step(loss, optimizer, scaler, sparsity)
            quiet.yield_point()  # a latency timing on this node goes first
            step += 1
            if ema is not None:
                ema.update(model, step=step)
            scheduler.step_update(step)
            loss_sum += loss_value * y.numel()
            n_seen += y.numel()
            out_of_time = cfg.time_limit is not None and time.perf_counter() - start > cfg.time_limit
            if step >= total_steps or out_of_time:
                result.time_limited = bool(out_of_time and step < total_steps)
                break
        evaluated = _masked_ema(ema, sparsity) if ema is not None else model
        accuracy, val_loss = evaluate(evaluated, bundle.val, dev, layout=result.layout)
        metrics = {
            "epoch": epoch + 1, "step": step, "accuracy": accuracy, "val_loss": val_loss,
            "train_loss": loss_sum / max(1, n_seen), "time": time.perf_counter() - start,
        }
        result.history.append(metrics)
        result.accuracy, result.val_loss, result.train_loss = accuracy, val_loss, metrics["train_loss"]
        result.epochs, result.steps = epoch + 1, step
        if progress:
            print(f"epoch {epoch + 1}/{epochs}  step {step}/{total_steps}  train_loss {metrics['train_loss']:.4f}  "
                  f"val_acc {accuracy:.2f}%  val_loss {val_loss:.4f}  {metrics['time']:.1f}s",
                  file=sys.stderr, flush=True)
        if not math.isfinite(val_loss):
            raise _Diverged(f"validation loss is {val_loss} after epoch {epoch + 1}; "
                            f"lower train.lr (now {cfg.lr:g}) or add warm-up")
        if report is not None and report(dict(metrics)):
            result.status = TrialStatus.STOPPED.value
            return evaluated
        if step >= total_steps or result.time_limited:
            return evaluated
    return evaluated
