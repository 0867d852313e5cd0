"""Data sets for proxy training: synthetic long-range tasks, image folders, CIFAR files.

    from lknas.data import build_data
    bundle = build_data("pathfinder:hard", resolution=64, batch_size=64, seed=0)
    for x, y in bundle.train: ...        # x float32 (B,C,R,R) normalized, y int64, on `device`

Names (the part after the first colon holds options or a path; `lknas.data.base.KINDS`):

- `pathfinder[:OPTIONS]`: LRA's Pathfinder, 2 classes, 1 channel (see `lknas.data.pathfinder`).
  Options: `difficulty=easy|medium|hard` (paths of 6 / 9 / 14 steps = 0.42 / 0.63 / 0.98 image
  widths, with 1 / 2 / 3 distractor curves; default easy; a bare word is the difficulty:
  `pathfinder:hard`), `length=N` (1..16 steps) and `distractors=N` (0..20) override the
  difficulty's values, `train=N`, `val=N`.
- `pointer[:OPTIONS]`: does the arrow point at the disk, `distance` image widths away; 2 classes,
  1 channel, the default spaces' proxy task (see `lknas.data.pointer`). Options:
  `distance=LO-HI` (image widths, default 0.25-0.75), `miss=DEG` or `LO-HI` (the smallest miss
  angle, default 30), `distractors=N` or `LO-HI` (extra disks, default 0), `train=N`, `val=N`.
- `match[:OPTIONS]`: are the two small glyphs `distance` image widths apart the same pattern;
  2 classes, 1 channel (see `lknas.data.match`). Options: `distance=LO-HI` (default 0.25-0.75),
  `glyphs=N` (patterns, 2..16, default 8), `train=N`, `val=N`.
- `shapes[:OPTIONS]`: textured geometric shapes, 8 classes, 3 channels (see `lknas.data.shapes`).
  Options: `classes=N` (the first N of circle, ring, square, frame, triangle, cross, star,
  crescent), `train=N`, `val=N`.
- `imagefolder:PATH`: PATH/train/<class>/* and PATH/val/<class>/* (or PATH/<class>/*, split 90/10
  by a fixed rule); ImageNet mean/std (see `lknas.data.folders`).
- `cifar10:PATH`, `cifar100:PATH`: the python pickle batches (never downloaded).

Options are comma separated: `pathfinder:difficulty=medium,distractors=4,train=20000`. The
keywords `train_size` / `val_size` of `build_data` override `train=` / `val=` (synthetic sets only).
Every size is capped (`lknas.limits`): `train=` / `val=` at 1,000,000 images and 8 GiB in memory
per split, `resolution` at 1024 (256 for synthetic sets), `batch_size` at 4096, `subset` at 10^8,
`workers` at 256; a larger value is a DataError saying the range, before anything is generated.

Synthetic sets are generated vectorized from the seed (train and val from separate streams, so the
val set does not depend on the train size; a smaller train size or `subset` is a prefix of a larger
one), kept in memory as uint8 tensors and served by tensor indexing. Default sizes: train 5000,
val 1000: a 64x64 epoch is 78 batches of 64, and 6000 images take 25 MB (pathfinder) / 74 MB
(shapes) as uint8. Generating both splits at 64x64 takes about 0.3 s (pathfinder easy), 0.7 s
(medium), 4.5 s (hard) and 2 s (shapes) of one CPU core; shapes at 128x128 about 9 s. They are
cached on disk (see `lknas.data.cache`: `$LKNAS_CACHE`, default `~/.cache/lknas/data`), so a
second build only loads. Normalization uses the per-channel mean/std of the generated train split.

`augment=True`: timm's `create_transform` training pipeline (random resized crop, flip, colour
jitter) for real data, each sample's randomness seeded from (seed, epoch) so it replays whatever
the worker count; random horizontal and vertical flips for the synthetic sets (label-safe for
both). Real data without augmentation is resized (shorter side) and centre-cropped to `resolution`;
CIFAR without augmentation (and CIFAR val) is resized as whole tensors (bilinear, antialiased).
`subset` caps the training samples: a prefix for synthetic sets, a fixed seed-independent random
subset for real data. `workers` is the DataLoader worker count for per-sample (real) pipelines;
in-memory sets need none and ignore it.
"""
from __future__ import annotations

import numbers
from typing import Any

import torch

from lknas.data import cache as _cache
from lknas.data import folders, match, pathfinder, pointer, shapes
from lknas.data.base import KINDS, DataBundle, DataError, DataSpec, parse_spec
from lknas.data.loaders import SampleLoader, TensorLoader
from lknas.limits import (
    MAX_BATCH_SIZE, MAX_DATA_BYTES, MAX_DATA_SIZE, MAX_RESOLUTION, MAX_SUBSET, MAX_WORKERS,
)

DEFAULT_TRAIN_SIZE = 5000
DEFAULT_VAL_SIZE = 1000
SYNTHETIC = {"pathfinder": pathfinder, "pointer": pointer, "match": match, "shapes": shapes}
MIN_SYNTHETIC_RESOLUTION, MAX_SYNTHETIC_RESOLUTION = 32, 256
MAX_INT = 2**63 - 1  # seeds

__all__ = [
    "DEFAULT_TRAIN_SIZE",
    "DEFAULT_VAL_SIZE",
    "KINDS",
    "SYNTHETIC",
    "DataBundle",
    "DataError",
    "DataSpec",
    "SampleLoader",
    "TensorLoader",
    "build_data",
    "parse_spec",
]


def _positive_int(what: str, value: Any, minimum: int = 1, maximum: int = MAX_INT) -> int:
    """`value` (an int or a decimal string) as an int in minimum..maximum; DataError otherwise."""
    expect = f"{what} must be an integer from {minimum} to {maximum}"
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, str)):
        raise DataError(f"{expect}, got {shown}")
    if isinstance(value, str) and (len(value.strip()) > 20 or not value.strip().lstrip("+-").replace("_", "").isdigit()):
        raise DataError(f"{expect}, got {shown}")
    v = int(value)
    if not minimum <= v <= maximum:
        raise DataError(f"{expect}, got {shown}")
    return v


def build_data(
    name: str,
    resolution: int = 64,
    batch_size: int = 64,
    seed: int = 0,
    subset: int | None = None,
    augment: bool | str = False,
    workers: int = 0,
    device: str | torch.device = "cpu",
    *,
    train_size: int | None = None,
    val_size: int | None = None,
    cache: bool = True,
    order_seed: int | None = None,
) -> DataBundle:
    """Build the train/val iterables of data set `name` (see the module docstring for names).

    Args:
        name: a data-set name with its options or path (`pointer:miss=20`, `imagefolder:PATH`).
        resolution: the image side; synthetic sets are drawn at it, real ones resized to it.
        batch_size: images per training batch (the validation batches too).
        seed: draws a synthetic set (and a real set's fixed `subset`).
        subset: use at most this many training images (a prefix of a synthetic set).
        augment: timm's training transform for real data, random flips for synthetic sets.
        workers: DataLoader workers for per-sample (real) pipelines; in-memory sets need none.
        device: where the batches are delivered.
        train_size, val_size: the synthetic sets' sizes (as the `train=` / `val=` options).
        cache: keep generated sets on disk (`$LKNAS_CACHE`); False generates them afresh.
        order_seed: the training order and augmentation (default `seed`), so a re-training with
            another seed can keep the same data.

    Returns:
        A `DataBundle` (train and val iterables, classes, channels, normalization).

    Raises:
        DataError (a LknasError): an unknown name or option, a value out of its range, a set over
            the memory cap, or a path that does not hold the data set; the message says what is valid.
    """
    spec = parse_spec(name)
    resolution = _positive_int("resolution", resolution, 8, MAX_RESOLUTION)
    batch_size = _positive_int("batch_size", batch_size, 1, MAX_BATCH_SIZE)
    seed = _positive_int("seed", seed, 0)
    workers = _positive_int("workers", workers, 0, MAX_WORKERS)
    if subset is not None:
        subset = _positive_int("subset", subset, 1, MAX_SUBSET)
    if spec.kind in SYNTHETIC:
        if not MIN_SYNTHETIC_RESOLUTION <= resolution <= MAX_SYNTHETIC_RESOLUTION:
            raise DataError(
                f"{spec.kind}: resolution must be in {MIN_SYNTHETIC_RESOLUTION}..{MAX_SYNTHETIC_RESOLUTION}, "
                f"got {resolution}"
            )
        bundle = _build_synthetic(spec, resolution, batch_size, seed, subset, augment, device,
                                  train_size, val_size, cache)
    elif train_size is not None or val_size is not None:
        raise DataError(
            f"{spec.kind}: train_size/val_size apply to the synthetic sets only; "
            "use subset to cap the training samples of real data"
        )
    elif spec.kind in ("cifar10", "cifar100"):
        bundle = _build_cifar(spec, resolution, batch_size, seed, subset, augment, workers, device)
    else:
        bundle = _build_imagefolder(spec, resolution, batch_size, seed, subset, augment, workers, device)
    if order_seed is not None:  # the data stays the one `seed` drew; the order follows this seed
        bundle.train.seed = _positive_int("order_seed", order_seed, 0)
    if bundle.train_size < batch_size:
        raise DataError(
            f"{bundle.spec}: {bundle.train_size} training samples, fewer than batch_size "
            f"{batch_size} (the last partial batch is dropped, so an epoch would be empty)"
        )
    return bundle


def _stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images (N,C,H,W), in [0,1] units (exact, from histograms)."""
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    mean, std = [], []
    for c in range(x.shape[1]):
        counts = torch.bincount(x[:, c].reshape(-1), minlength=256).to(torch.float64)
        p = counts / counts.sum()
        m = float((p * levels).sum())
        v = float((p * (levels - m) ** 2).sum())
        mean.append(m)
        std.append(v**0.5 if v > 1e-12 else 1.0)
    return mean, std


def _build_synthetic(spec, resolution, batch_size, seed, subset, augment, device,
                     train_size, val_size, use_cache) -> DataBundle:
    module = SYNTHETIC[spec.kind]
    params = module.resolve_options(spec.options)
    sizes = {}
    per_image = module.CHANNELS * resolution * resolution  # bytes held in memory (uint8)
    for split, given, default in (("train", train_size, DEFAULT_TRAIN_SIZE), ("val", val_size, DEFAULT_VAL_SIZE)):
        value = given if given is not None else spec.options.get(split, default)
        sizes[split] = _positive_int(f"{spec.kind}: {split} size", value, 1, MAX_DATA_SIZE)
        if sizes[split] * per_image > MAX_DATA_BYTES:
            raise DataError(
                f"{spec.kind}: {split}={sizes[split]:,} images at {resolution}x{resolution} would take "
                f"{sizes[split] * per_image / 2**30:.1f} GiB in memory, over {MAX_DATA_BYTES / 2**30:g} GiB; "
                f"use at most {MAX_DATA_BYTES // per_image:,} images at this resolution"
            )
    n_train = min(sizes["train"], subset) if subset is not None else sizes["train"]
    arrays = {}
    for split_id, (split, n) in enumerate((("train", n_train), ("val", sizes["val"]))):
        key = {
            "kind": spec.kind, "version": module.VERSION, "params": params, "split": split,
            "n": n, "resolution": resolution, "seed": seed,
        }

        def make(n=n, split_id=split_id, split=split):
            out = module.generate(n, resolution, seed, split_id, params)
            obj = {"x": torch.from_numpy(out["x"]), "y": torch.from_numpy(out["y"])}
            if split == "train":
                obj["mean"], obj["std"] = _stats(obj["x"])
            return obj

        arrays[split], _ = _cache.load_or_generate(key, make, use_cache)
    mean, std = tuple(arrays["train"]["mean"]), tuple(arrays["train"]["std"])
    options = ",".join(f"{k}={v}" for k, v in {**params, "train": sizes["train"], "val": sizes["val"]}.items())
    classes = module.class_names(params) if hasattr(module, "class_names") else list(module.CLASSES)
    common = dict(batch_size=batch_size, mean=mean, std=std, seed=seed, device=device)
    return DataBundle(
        name=spec.kind,
        spec=f"{spec.kind}:{options}",
        train=TensorLoader(arrays["train"]["x"], arrays["train"]["y"], shuffle=True, drop_last=True,
                           flips=module.FLIPS if augment else "", **common),
        val=TensorLoader(arrays["val"]["x"], arrays["val"]["y"], shuffle=False, drop_last=False, **common),
        num_classes=len(classes),
        in_chans=module.CHANNELS,
        resolution=resolution,
        train_size=n_train,
        val_size=sizes["val"],
        mean=mean,
        std=std,
        classes=classes,
        info={"params": params, "augment": bool(augment), "subset": subset},
    )


def _transforms(resolution: int, mean, std, augment: bool | str):
    """timm's eval and train transforms; a string `augment` is timm's auto-augment policy for
    training (e.g. 'rand-m9-mstd0.5-inc1', RandAugment as ConvNeXt trains)."""
    from timm.data import create_transform

    size = (3, resolution, resolution)
    evaluate = create_transform(input_size=size, is_training=False, crop_pct=1.0,
                                interpolation="bilinear", mean=mean, std=std)
    policy = augment if isinstance(augment, str) and augment else None
    train = (create_transform(input_size=size, is_training=True, interpolation="bilinear", auto_augment=policy,
                              mean=mean, std=std) if augment else evaluate)
    return train, evaluate


def _build_cifar(spec, resolution, batch_size, seed, subset, augment, workers, device) -> DataBundle:
    data = folders.load_cifar(spec.kind, spec.path)
    mean, std = folders.CIFAR_STATS[spec.kind]
    x, y = data["x_train"], data["y_train"]
    keep = folders.fixed_subset(len(x), subset)
    if keep is not None:
        x, y = x[keep], y[keep]
    resize = resolution if resolution != 32 else None
    common = dict(batch_size=batch_size, seed=seed, device=device)
    if augment:
        train_tf, _ = _transforms(resolution, mean, std, True)
        train = SampleLoader(folders.ArrayImages(x, y, train_tf), shuffle=True, drop_last=True,
                             workers=workers, random_transform=True, **common)
    else:
        train = TensorLoader(x, y, mean=mean, std=std, shuffle=True, drop_last=True, resize=resize, **common)
    val = TensorLoader(data["x_val"], data["y_val"], mean=mean, std=std, shuffle=False,
                       drop_last=False, resize=resize, **common)
    return DataBundle(
        name=spec.kind, spec=f"{spec.kind}:{spec.path}", train=train, val=val,
        num_classes=len(data["classes"]), in_chans=3, resolution=resolution,
        train_size=len(x), val_size=len(data["x_val"]), mean=tuple(mean), std=tuple(std),
        classes=data["classes"], info={"augment": bool(augment), "subset": subset},
    )


def _build_imagefolder(spec, resolution, batch_size, seed, subset, augment, workers, device) -> DataBundle:
    classes, train_samples, val_samples = folders.scan_imagefolder(spec.path)
    keep = folders.fixed_subset(len(train_samples), subset)
    if keep is not None:
        train_samples = [train_samples[i] for i in keep]
    mean, std = folders.IMAGENET_MEAN, folders.IMAGENET_STD
    train_tf, eval_tf = _transforms(resolution, mean, std, augment)
    common = dict(batch_size=batch_size, seed=seed, device=device, workers=workers)
    return DataBundle(
        name="imagefolder", spec=f"imagefolder:{spec.path}",
        train=SampleLoader(folders.ImageFiles(train_samples, train_tf), shuffle=True, drop_last=True,
                           random_transform=augment, **common),
        val=SampleLoader(folders.ImageFiles(val_samples, eval_tf), shuffle=False, drop_last=False, **common),
        num_classes=len(classes), in_chans=3, resolution=resolution,
        train_size=len(train_samples), val_size=len(val_samples), mean=tuple(mean), std=tuple(std),
        classes=classes, info={"augment": bool(augment), "subset": subset},
    )
