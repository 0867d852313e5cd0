"""Real data on disk, never downloaded: image folders and CIFAR python batches.

`imagefolder:PATH` expects torchvision's ImageFolder layout, either `PATH/train/<class>/<image>`
with `PATH/val/<class>/<image>`, or just `PATH/<class>/<image>`, in which case 10% of each class
(at least one image when a class has two or more) is held out as val by a fixed, seed-independent
split. Images are read with PIL as RGB and normalized with the ImageNet mean/std.

`cifar10:PATH` expects `PATH/data_batch_1..5` and `PATH/test_batch`, `cifar100:PATH` expects
`PATH/train` and `PATH/test` (the python versions, as extracted from cifar-10-python.tar.gz /
cifar-100-python.tar.gz); `PATH` may also be the folder holding `cifar-10-batches-py` /
`cifar-100-python`. Each batch is a pickled dict with `data` (N x 3072 uint8, channel-major 32x32)
and `labels` (CIFAR-10) or `fine_labels` (CIFAR-100). Normalization uses the usual CIFAR mean/std.
The batches and their metadata are unpickled by `lknas.data.safe_pickle.load_plain`, which reads
numpy arrays and plain containers only: a file that names anything else (it could run code) is
refused with a DataError naming it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from lknas.data.base import DataError
from lknas.data.safe_pickle import UnsafePickleError, load_plain

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
VAL_FRACTION = 0.1

IMAGEFOLDER_LAYOUT = (
    "imagefolder:PATH expects PATH/train/<class>/<image> and PATH/val/<class>/<image> "
    "(or PATH/<class>/<image>, split deterministically), images with extensions "
    + ", ".join(IMG_EXTENSIONS)
)
CIFAR_LAYOUT = {
    "cifar10": "cifar10:PATH expects PATH/data_batch_1..5 and PATH/test_batch (the python version "
    "of CIFAR-10, as extracted from cifar-10-python.tar.gz: pickled dicts with b'data' (N x 3072 "
    "uint8) and b'labels')",
    "cifar100": "cifar100:PATH expects PATH/train and PATH/test (the python version of CIFAR-100, "
    "as extracted from cifar-100-python.tar.gz: pickled dicts with b'data' (N x 3072 uint8) and "
    "b'fine_labels')",
}


# ----------------------------------------------------------------------------- image folders
def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS
    )


def scan_imagefolder(path: str) -> tuple[list[str], list[tuple[str, int]], list[tuple[str, int]]]:
    """Return (classes, train samples, val samples) as (file, class index) lists."""
    root = Path(path)
    if not root.exists():
        raise DataError(f"imagefolder: {path} does not exist; {IMAGEFOLDER_LAYOUT}")
    if not root.is_dir():
        raise DataError(f"imagefolder: {path} is not a directory; {IMAGEFOLDER_LAYOUT}")
    train_dir, val_dir = root / "train", root / "val"
    if train_dir.is_dir() != val_dir.is_dir():
        have, missing = ("train", "val") if train_dir.is_dir() else ("val", "train")
        raise DataError(f"imagefolder: {path} has {have}/ but no {missing}/; {IMAGEFOLDER_LAYOUT}")
    if train_dir.is_dir():
        classes = [d.name for d in _class_dirs(train_dir)]
        if not classes:
            raise DataError(f"imagefolder: {train_dir} has no class folders; {IMAGEFOLDER_LAYOUT}")
        index = {c: i for i, c in enumerate(classes)}
        extra = [d.name for d in _class_dirs(val_dir) if d.name not in index]
        if extra:
            raise DataError(f"imagefolder: {val_dir} has classes missing from train/: {extra}")
        train = [(str(f), index[c]) for c in classes for f in _images(train_dir / c)]
        val = [(str(f), index[d.name]) for d in _class_dirs(val_dir) for f in _images(d)]
    else:
        dirs = _class_dirs(root)
        classes = [d.name for d in dirs]
        if not classes:
            raise DataError(f"imagefolder: {path} has no class folders; {IMAGEFOLDER_LAYOUT}")
        rng = np.random.default_rng(0)  # fixed: the split must not move with the trial seed
        train, val = [], []
        for i, d in enumerate(dirs):
            files = [str(f) for f in _images(d)]
            order = rng.permutation(len(files))
            n_val = int(round(len(files) * VAL_FRACTION))
            if len(files) >= 2:
                n_val = max(1, n_val)
            val += [(files[j], i) for j in sorted(order[:n_val])]
            train += [(files[j], i) for j in sorted(order[n_val:])]
    if not train:
        raise DataError(f"imagefolder: no training images found under {path}; {IMAGEFOLDER_LAYOUT}")
    if not val:
        raise DataError(f"imagefolder: no validation images found under {path}; {IMAGEFOLDER_LAYOUT}")
    if len(classes) < 2:
        raise DataError(f"imagefolder: {path} has {len(classes)} class folder ({', '.join(classes)}); classification "
                        f"needs at least 2 classes (one class would score 100%); {IMAGEFOLDER_LAYOUT}")
    return classes, train, val


class ImageFiles(Dataset):
    """(file, label) samples read with PIL as RGB, then `transform`."""

    def __init__(self, samples: list[tuple[str, int]], transform):
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        file, label = self.samples[i]
        try:
            with Image.open(file) as im:
                img = im.convert("RGB")
        except Image.DecompressionBombError as e:
            raise DataError(f"imagefolder: {file} is too large to decode safely ({e}); remove or shrink it, or raise "
                            f"PIL.Image.MAX_IMAGE_PIXELS if the image is trusted") from None
        except (OSError, ValueError, SyntaxError) as e:  # unidentified, truncated or malformed image files
            raise DataError(f"imagefolder: cannot read image {file} ({type(e).__name__}: {e}); remove or "
                            f"replace it") from None
        return self.transform(img), label


# ----------------------------------------------------------------------------- CIFAR
def _cifar_root(kind: str, path: str) -> Path:
    root = Path(path)
    if not root.exists():
        raise DataError(f"{kind}: {path} does not exist; {CIFAR_LAYOUT[kind]}")
    if not root.is_dir():
        raise DataError(f"{kind}: {path} is not a directory; {CIFAR_LAYOUT[kind]}")
    inner = root / ("cifar-10-batches-py" if kind == "cifar10" else "cifar-100-python")
    return inner if inner.is_dir() else root


def _read_batch(kind: str, file: Path) -> tuple[np.ndarray, np.ndarray]:
    label_key = "labels" if kind == "cifar10" else "fine_labels"
    try:
        d = load_plain(file, kind, encoding="bytes")
    except UnsafePickleError:
        raise
    except Exception as e:
        raise DataError(f"{kind}: cannot unpickle {file} ({e}); {CIFAR_LAYOUT[kind]}") from e
    if not isinstance(d, dict):
        raise DataError(f"{kind}: {file} does not hold a dict; {CIFAR_LAYOUT[kind]}")
    d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
    if "data" not in d or label_key not in d:
        raise DataError(
            f"{kind}: {file} lacks the key(s) {[k for k in ('data', label_key) if k not in d]}; "
            f"{CIFAR_LAYOUT[kind]}"
        )
    data = np.asarray(d["data"])
    labels = np.asarray(d[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(
            f"{kind}: {file}: data has shape {data.shape} and dtype {data.dtype}, expected "
            f"(N, 3072) uint8; {CIFAR_LAYOUT[kind]}"
        )
    if labels.shape != (len(data),):
        raise DataError(f"{kind}: {file}: {len(labels)} labels for {len(data)} images")
    n_classes = 10 if kind == "cifar10" else 100
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"{kind}: {file}: labels must be in 0..{n_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels


def _class_names(kind: str, root: Path) -> list[str]:
    n = 10 if kind == "cifar10" else 100
    meta, key = (root / "batches.meta", "label_names") if kind == "cifar10" else (root / "meta", "fine_label_names")
    try:
        d = load_plain(meta, kind, encoding="bytes")
        names = d.get(key.encode(), d.get(key))
        names = [x.decode() if isinstance(x, bytes) else str(x) for x in names]
        if len(names) == n:
            return names
    except UnsafePickleError:
        raise  # a data folder holding a crafted file is not silently used
    except Exception:
        pass  # missing or unusual metadata: numbered classes
    return [str(i) for i in range(n)]


def load_cifar(kind: str, path: str) -> dict:
    """Read the CIFAR batches: x_train/x_val uint8 (N,3,32,32), y int64, classes."""
    root = _cifar_root(kind, path)
    names = (
        ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"])
        if kind == "cifar10"
        else (["train"], ["test"])
    )
    missing = [n for n in names[0] + names[1] if not (root / n).is_file()]
    if missing:
        raise DataError(f"{kind}: {root} lacks {', '.join(missing)}; {CIFAR_LAYOUT[kind]}")
    out = {}
    for split, files in zip(("train", "val"), names):
        parts = [_read_batch(kind, root / f) for f in files]
        out[f"x_{split}"] = torch.from_numpy(np.concatenate([p[0] for p in parts]))
        out[f"y_{split}"] = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    out["classes"] = _class_names(kind, root)
    return out


class ArrayImages(Dataset):
    """uint8 (N,3,H,W) images as PIL for per-sample (timm) transforms."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.x[i].permute(1, 2, 0).numpy())
        return self.transform(img), int(self.y[i])


def fixed_subset(n: int, subset: int | None) -> np.ndarray | None:
    """Indices of a seed-independent subset of size `subset` (sorted), or None for all."""
    if subset is None or subset >= n:
        return None
    return np.sort(np.random.default_rng(0).permutation(n)[:subset])


