"""Batch iterators.

`TensorLoader` serves a data set held in memory as one uint8 tensor (synthetic sets, CIFAR without
augmentation): batches come from tensor indexing, with no per-sample Python and no workers.
`SampleLoader` wraps a torch `DataLoader` over a per-sample dataset (image folders, augmented CIFAR).
Both reshuffle the training order each epoch from `seed + epoch` and move batches to `device`.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from lknas.data.base import DataError


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) & 0xFFFF_FFFF_FFFF)


class _Epochs:
    """Epoch bookkeeping shared by the loaders: each `iter()` starts the next epoch."""

    epoch: int = 0
    shuffle: bool = False
    seed: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next `iter()` produce epoch `epoch` (order from seed + epoch)."""
        self.epoch = int(epoch)

    def _next_epoch(self) -> int:
        e = self.epoch
        self.epoch += 1
        return e


class TensorLoader(_Epochs):
    """Batches from in-memory tensors `x` (N,C,H,W uint8) and `y` (N,) int64.

    Each batch is converted to float32 in [0,1], optionally resized to `resize` (bilinear,
    antialiased), normalized with `mean`/`std`, and (when `flips` names "h" and/or "v") randomly
    flipped per sample. Randomness comes only from `seed + epoch`.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        shuffle: bool,
        drop_last: bool,
        seed: int = 0,
        device: str | torch.device = "cpu",
        flips: str = "",
        resize: int | None = None,
    ):
        if x.dtype != torch.uint8 or x.ndim != 4 or len(x) != len(y):
            raise ValueError("TensorLoader expects x uint8 (N,C,H,W) and y (N,)")
        self.device = torch.device(device)
        self.x = x.to(self.device)
        self.y = y.to(torch.int64).to(self.device)
        self.batch_size = int(batch_size)
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, int(seed)
        self.flips, self.resize = flips, resize
        c = x.shape[1]
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        self.epoch = 0

    def __len__(self) -> int:
        n, b = len(self.x), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self._next_epoch()
        n = len(self.x)
        g = _generator(self.seed + epoch)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        flip_draws = None
        if self.flips:
            flip_draws = torch.rand(n, 2, generator=g) < 0.5
        order = order.to(self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            xb = self.x[idx].float().div_(255.0)
            if self.resize is not None and xb.shape[-1] != self.resize:
                xb = F.interpolate(
                    xb, size=(self.resize, self.resize), mode="bilinear",
                    align_corners=False, antialias=True,
                )
            if flip_draws is not None:
                draws = flip_draws[i * self.batch_size : (i + 1) * self.batch_size].to(self.device)
                if "h" in self.flips:
                    xb = torch.where(draws[:, 0].view(-1, 1, 1, 1), xb.flip(-1), xb)
                if "v" in self.flips:
                    xb = torch.where(draws[:, 1].view(-1, 1, 1, 1), xb.flip(-2), xb)
            xb = (xb - self.mean) / self.std
            yield xb.contiguous(), self.y[idx]


class _SeededSamples(Dataset):
    """Wraps a per-sample dataset so that sample `(i, s)` applies its random transform with the
    Python and torch CPU generators seeded by `s` (restored afterwards): augmentation is
    reproducible whatever the number of workers."""

    def __init__(self, base: Dataset, seeded: bool):
        self.base, self.seeded = base, seeded

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, item):
        i, s = item
        if not self.seeded:
            return self.base[i]
        state = random.getstate()
        try:
            random.seed(s)
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(s)  # CPU only: never touch CUDA generators
                return self.base[i]
        finally:
            random.setstate(state)


class SampleLoader(_Epochs):
    """A `DataLoader` over `dataset` (items `(tensor, label)`), rebuilt each epoch with the order
    and per-sample augmentation seeds drawn from `seed + epoch`; batches are moved to `device`."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        seed: int = 0,
        device: str | torch.device = "cpu",
        workers: int = 0,
        random_transform: bool = False,
        collate_fn: Callable | None = None,
    ):
        self.dataset = _SeededSamples(dataset, random_transform)
        self.n = len(dataset)  # type: ignore[arg-type]
        self.batch_size = int(batch_size)
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, int(seed)
        self.device = torch.device(device)
        self.workers = int(workers)
        self.collate_fn = collate_fn
        self.epoch = 0

    def __len__(self) -> int:
        n, b = self.n, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self._next_epoch()
        g = _generator(self.seed + epoch)
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        seeds = torch.randint(0, 2**31 - 1, (self.n,), generator=g)
        items = list(zip(order.tolist(), seeds.tolist()))
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=items,
            drop_last=self.drop_last,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            collate_fn=self.collate_fn,
            generator=g,  # the loader's base seed comes from here, not from the global RNG
        )
        non_blocking = self.device.type == "cuda"
        try:
            for xb, yb in loader:
                yield (
                    xb.to(self.device, non_blocking=non_blocking),
                    torch.as_tensor(yb, dtype=torch.int64).to(self.device, non_blocking=non_blocking),
                )
        except DataError as err:
            raise DataError(_worker_message(str(err))) from None


def _worker_message(text: str) -> str:
    """A DataError raised in a DataLoader worker comes back with the worker's traceback in its
    message; keep the original message only (its last line, after the exception's name)."""
    if "Traceback (most recent call last)" not in text:
        return text
    last = [line for line in text.strip().splitlines() if line.strip()][-1]
    return last.split("DataError: ", 1)[-1].strip()
