"""argparse value types with documented ranges, so a meaningless flag value is refused at parse time.

Each numeric flag of `python -m lknas` takes one of the `Number` ranges below as its `type`:
argparse then refuses a value outside it (NaN and infinities included) with the flag, the value and
the valid range, and exits with code 2 before anything runs. `with_range(help, number)` appends the
range to the flag's help, so `--help` documents it. What a parse-time check cannot know (a CUDA
device, the cluster's CPUs, the architecture's smallest input) is checked at the library's entry
points and raised as `LknasError`.

    p.add_argument("--epochs", type=EPOCHS, help=with_range("proxy epochs", EPOCHS))
"""
from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from pathlib import Path

from lknas import limits as L

__all__ = [
    "Number", "SEED", "RESOLUTION", "EPOCHS", "ERF_EPOCHS", "STEPS", "BATCH", "THROUGHPUT_BATCH", "SUBSET", "TRIALS",
    "CONCURRENT", "SEEDS", "NUM_CLASSES", "WORKERS", "THREADS", "REPEATS", "IMAGES", "TRIAL_ID", "LR", "WEIGHT_DECAY",
    "WARMUP", "MIX_ALPHA", "DROP_RATE", "SECONDS", "FIDELITY_ARCHS", "FIDELITY_SEEDS", "BUDGET_FACTOR", "CPUS", "GPUS", "DEVICES", "device", "out_file", "out_dir",
    "with_range",
]


@dataclass(frozen=True)
class Number:
    """An argparse type: an int or a finite float within [lo, hi] (ends open where marked).

    `whole_above_one`: values above 1 must be whole numbers (Ray's rule for resources: 0.5 GPU
    is fine, 1.5 is not)."""

    kind: type
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    whole_above_one: bool = False

    @property
    def __name__(self) -> str:  # argparse names the type in some of its messages
        return "integer" if self.kind is int else "number"

    def describe(self) -> str:
        """'an integer >= 1', 'a number in [0, 1)', ..."""
        what = "an integer" if self.kind is int else "a number"
        if self.lo is not None and self.hi is not None:
            if self.kind is int:
                return f"{what} from {self.lo:,} to {self.hi:,}"
            return f"{what} in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            text = f"{what} {'>' if self.lo_open else '>='} {self.lo:g}"
        elif self.hi is not None:
            text = f"{what} {'<' if self.hi_open else '<='} {self.hi:g}"
        else:
            text = f"a finite {what[2:]}" if self.kind is float else what
        if self.whole_above_one:
            text += ", whole above 1"
        return text

    def check(self, value: float) -> float:
        """`value` if it is in range; ValueError naming the range otherwise."""
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"must be {self.describe()}, not {value}")
        low = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        high = self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi)
        if low or high:
            raise ValueError(f"must be {self.describe()}, got {value:g}" if isinstance(value, float)
                             else f"must be {self.describe()}, got {value}")
        if self.whole_above_one and value > 1 and not float(value).is_integer():
            raise ValueError(f"must be a fraction below 1 (0.5, 0.25) or a whole number above it, got {value:g}")
        return value

    def __call__(self, text: str) -> int | float:
        raw = text.strip()
        try:
            value: int | float = int(raw) if self.kind is int else float(raw)
        except ValueError:
            hint = " (a whole number, no decimal point)" if self.kind is int and _looks_numeric(raw) else ""
            raise argparse.ArgumentTypeError(f"must be {self.describe()}{hint}; got {text!r}") from None
        try:
            return self.check(value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# The ranges, from lknas.limits (the one place every bound lives: space files and run settings use
# the same). Seeds stay below 2**31 so that seed + finished trials still fits the samplers' 32 bits.
SEED = Number(int, 0, L.MAX_SEED)
RESOLUTION = Number(int, L.MIN_RESOLUTION, L.MAX_RESOLUTION)  # the architecture may need more (its stride)
EPOCHS = Number(int, 1, L.MAX_EPOCHS)
ERF_EPOCHS = Number(int, 0, L.MAX_EPOCHS)  # 0: measure at initialization
STEPS = Number(int, 1, L.MAX_STEPS)
BATCH = Number(int, 1, L.MAX_BATCH_SIZE)
THROUGHPUT_BATCH = Number(int, 0, L.MAX_BATCH_SIZE)  # 0 skips the throughput
SUBSET = Number(int, 1, L.MAX_SUBSET)
TRIALS = Number(int, 1, L.MAX_TRIALS)
RETIME = Number(int, 0, L.MAX_RETIME_ROUNDS)  # 0: no quiet re-timing of the latency front
TRIAL_SEEDS = Number(int, 1, L.MAX_TRIAL_SEEDS)  # training seeds averaged per search trial
CONCURRENT = Number(int, 1, L.MAX_CONCURRENT)
SEEDS = Number(int, 1, L.MAX_SEEDS_PER_POINT)
NUM_CLASSES = Number(int, 1, L.MAX_CLASSES)
WORKERS = Number(int, 0, L.MAX_WORKERS)
THREADS = Number(int, 1, L.MAX_THREADS)
REPEATS = Number(int, 1, L.MAX_REPEATS)
IMAGES = Number(int, 1, L.MAX_ERF_IMAGES)
TRIAL_ID = Number(int, 0, L.MAX_TRIALS)
LR = Number(float, 0, L.MAX_LR, lo_open=True)
WEIGHT_DECAY = Number(float, 0, L.MAX_WEIGHT_DECAY)
WARMUP = Number(float, 0, L.MAX_EPOCHS)
MIX_ALPHA = Number(float, 0, L.MAX_MIX_ALPHA)  # 0 disables
DROP_RATE = Number(float, 0, 1, hi_open=True)
SECONDS = Number(float, 0, L.MAX_SECONDS, lo_open=True)  # time limits and budgets
FIDELITY_ARCHS = Number(int, 3, L.MAX_TRIALS)  # rank correlations need 3 architectures
FIDELITY_SEEDS = Number(int, 2, L.MAX_SEEDS_PER_POINT)  # the seed noise (ICC) needs repeats
BUDGET_FACTOR = Number(float, 0, L.MAX_BUDGET_FACTOR, lo_open=True)
REDUCTION_FACTOR = Number(float, 1, L.MAX_REDUCTION_FACTOR, lo_open=True)  # asha / moasha
CPUS = Number(float, 0, L.MAX_CPUS_PER_TRIAL, lo_open=True, whole_above_one=True)
GPUS = Number(float, 0, L.MAX_GPUS_PER_TRIAL, whole_above_one=True)

DEVICES = ("auto", "cpu", "cuda", "cuda:N")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def device(text: str) -> str:
    """cpu | cuda | cuda:N | auto (whether CUDA is there is checked when the command runs)."""
    if not _DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(DEVICES)}; got {text!r}")
    return text


def out_file(text: str) -> str:
    """A file to write: refused if it names an existing directory or lies under a file."""
    path = Path(text)
    if not text.strip():
        raise argparse.ArgumentTypeError("give a file name")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file name, e.g. {path / 'out'}")
    _parent_not_a_file(path, text)
    return text


def out_dir(text: str) -> str:
    """A directory to write into: refused if it names an existing file or lies under one."""
    path = Path(text)
    if not text.strip():
        raise argparse.ArgumentTypeError("give a directory name")
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is an existing file, not a directory; give a directory "
                                         f"(it is created if missing)")
    _parent_not_a_file(path, text)
    return text


def _parent_not_a_file(path: Path, text: str) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{text}: {parent} is a file, so nothing can be written under it")
            return


def with_range(text: str, number: Number) -> str:
    """The help text with the flag's range: 'proxy epochs (an integer >= 1)'."""
    return f"{text} [{number.describe()}]"
