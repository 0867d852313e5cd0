"""argparse value types with documented ranges, so a meaningless flag value is refused at parse time.

Each numeric flag of `python -m lknas` takes one of the `Number` ranges below as its `type`:
argparse then refuses a value outside it (NaN and infinities included) with the flag, the value and
the valid range, and exits with code 2 before anything runs. `with_range(help, number)` appends the
range to the flag's help, so `--help` documents it. What a parse-time check cannot know (a CUDA
device, the cluster's CPUs, the architecture's smallest input) is checked at the library's entry
points and raised as `LknasError`.

    p.add_argument("--epochs", type=COUNT, help=with_range("proxy epochs", COUNT))
"""
from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Number", "COUNT", "NON_NEGATIVE", "SEED", "SEEDS", "WORKERS", "BATCH", "THROUGHPUT_BATCH", "RESOLUTION", "THREADS", "REPEATS", "NUM_CLASSES",
    "POSITIVE", "NON_NEGATIVE_FLOAT", "DROP_RATE", "CPUS", "GPUS", "DEVICES", "device", "out_file",
    "out_dir", "with_range",
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


# The ranges. Seeds stay below 2**31 so that seed + finished trials still fits the samplers' 32 bits.
COUNT = Number(int, 1)                      # epochs, steps, batch sizes, trials, subset, images, seeds
NON_NEGATIVE = Number(int, 0)               # 0 means "none": erf epochs (at initialization); a trial id
SEED = Number(int, 0, 2**31 - 1)
SEEDS = Number(int, 1, 1000)                # seeds per point of a study: each is a trial per point
WORKERS = Number(int, 0, 256)               # data loader processes
BATCH = Number(int, 1, 4096)                # a measurement batch (allocated at once, no data to bound it)
THROUGHPUT_BATCH = Number(int, 0, 4096)     # 0 skips the throughput
RESOLUTION = Number(int, 16, 2048)          # input size; the architecture may need more (its total stride)
THREADS = Number(int, 1, 1024)
REPEATS = Number(int, 1, 100_000)
NUM_CLASSES = Number(int, 1, 1_000_000)
POSITIVE = Number(float, 0, lo_open=True)   # lr, time limit, time budget
NON_NEGATIVE_FLOAT = Number(float, 0)       # weight decay, warm-up epochs, mixup/cutmix alpha
DROP_RATE = Number(float, 0, 1, hi_open=True)
CPUS = Number(float, 0, lo_open=True, whole_above_one=True)
GPUS = Number(float, 0, whole_above_one=True)

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
