"""lknas.data on real-data layouts the tests write: image folders (PNG) and CIFAR pickles."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from lknas.data import DataError, build_data
from lknas.data.folders import CIFAR_STATS, IMAGENET_MEAN, IMAGENET_STD

COLORS = {"blue": (0, 0, 255), "green": (0, 255, 0), "red": (255, 0, 0)}


def write_pngs(folder, per_class, sizes=((20, 20), (40, 24), (17, 33))):
    for name, rgb in COLORS.items():
        d = folder / name
        d.mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", sizes[i % len(sizes)], rgb).save(d / f"{i}.png")


def channel_of(x):
    """Undo the ImageNet normalization and return the dominant channel per image."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x * std + mean).mean(dim=(2, 3)).argmax(1)


# ----------------------------------------------------------------------------- image folders
def test_imagefolder_train_val(tmp_path):
    write_pngs(tmp_path / "train", 4)
    write_pngs(tmp_path / "val", 2)
    b = build_data(f"imagefolder:{tmp_path}", resolution=32, batch_size=4, seed=0)
    assert (b.name, b.num_classes, b.in_chans, b.resolution) == ("imagefolder", 3, 3, 32)
    assert b.classes == ["blue", "green", "red"]
    assert (b.train_size, b.val_size, len(b.train), len(b.val)) == (12, 6, 3, 2)
    assert b.mean == IMAGENET_MEAN
    xs, ys = zip(*list(b.train))
    assert all(x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 for x in xs)
    x, y = torch.cat(xs), torch.cat(ys)
    assert y.dtype == torch.int64 and sorted(y.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    # labels follow the sorted class names; blue=0 -> channel 2, green=1 -> 1, red=2 -> 0
    assert torch.equal(channel_of(x), 2 - y)
    xv, yv = zip(*list(b.val))
    assert [len(v) for v in yv] == [4, 2]
    assert torch.equal(torch.cat(yv), torch.tensor([0, 0, 1, 1, 2, 2]))
    # the epoch order is seeded: a second bundle replays it, the next epoch differs
    again = build_data(f"imagefolder:{tmp_path}", resolution=32, batch_size=4, seed=0)
    assert torch.equal(torch.cat([y for _, y in again.train]), y)
    assert not torch.equal(torch.cat([y for _, y in b.train]), y)


def test_imagefolder_without_split_is_split_deterministically(tmp_path):
    write_pngs(tmp_path, 10)
    a = build_data(f"imagefolder:{tmp_path}", resolution=32, batch_size=4)
    b = build_data(f"imagefolder:{tmp_path}", resolution=32, batch_size=4, seed=7)
    assert (a.train_size, a.val_size) == (27, 3)  # 10% of each class held out
    assert [f for f, _ in a.val.dataset.base.samples] == [f for f, _ in b.val.dataset.base.samples]
    assert sorted(y for _, y in a.val.dataset.base.samples) == [0, 1, 2]
    train_files = {f for f, _ in a.train.dataset.base.samples}
    assert not train_files & {f for f, _ in a.val.dataset.base.samples}


def test_imagefolder_augment_and_subset(tmp_path):
    write_pngs(tmp_path / "train", 6)
    write_pngs(tmp_path / "val", 1)
    kw = dict(resolution=40, batch_size=4, seed=1, augment=True, subset=8)
    plain = build_data(f"imagefolder:{tmp_path}", resolution=40, batch_size=4, seed=1, subset=8)
    a = build_data(f"imagefolder:{tmp_path}", **kw)
    b = build_data(f"imagefolder:{tmp_path}", **kw)
    assert a.train_size == 8 and len(a.train) == 2
    xa, xb = torch.cat([x for x, _ in a.train]), torch.cat([x for x, _ in b.train])
    assert xa.shape == (8, 3, 40, 40)
    assert not torch.equal(xa, torch.cat([x for x, _ in plain.train]))  # augmented
    assert torch.equal(xa, xb)  # timm augmentation, reproducible from the seed
    c = build_data(f"imagefolder:{tmp_path}", **kw, workers=1)
    assert torch.equal(torch.cat([x for x, _ in c.train]), xa)  # whatever the worker count


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist.*PATH/train/<class>/<image>"):
        build_data(f"imagefolder:{tmp_path / 'nope'}")
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="has train/ but no val/"):
        build_data(f"imagefolder:{tmp_path}")
    (tmp_path / "val" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no training images"):
        build_data(f"imagefolder:{tmp_path}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no class folders"):
        build_data(f"imagefolder:{empty}")


# ----------------------------------------------------------------------------- CIFAR
def cifar_batch(path, n, label_key, num_classes, offset=0):
    labels = [(offset + i) % num_classes for i in range(n)]
    # channel-major rows: every pixel of image i holds its label (times 2), so tests can check
    data = np.repeat(np.array(labels, dtype=np.uint8)[:, None] * 2, 3072, axis=1)
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"x", label_key: labels, b"data": data}, f)


def write_cifar10(root, per_batch=8):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        cifar_batch(root / f"data_batch_{i}", per_batch, b"labels", 10, offset=i)
    cifar_batch(root / "test_batch", 6, b"labels", 10)
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f)


def write_cifar100(root):
    root.mkdir(parents=True, exist_ok=True)
    cifar_batch(root / "train", 30, b"fine_labels", 100)
    cifar_batch(root / "test", 7, b"fine_labels", 100)


def undo(x, kind):
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in CIFAR_STATS[kind])
    return torch.round((x * std + mean) * 255)


@pytest.mark.parametrize("res", [32, 48])
def test_cifar10(tmp_path, res):
    write_cifar10(tmp_path)
    b = build_data(f"cifar10:{tmp_path}", resolution=res, batch_size=8)
    assert (b.name, b.num_classes, b.in_chans, b.train_size, b.val_size) == ("cifar10", 10, 3, 40, 6)
    assert b.classes == [f"c{i}" for i in range(10)]
    assert len(b.train) == 5 and len(b.val) == 1
    xs, ys = zip(*list(b.train))  # one epoch
    x, y = torch.cat(xs), torch.cat(ys)
    assert x.shape == (40, 3, res, res) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(undo(x, "cifar10")[:, :, res // 2, res // 2], 2 * y[:, None].float().expand(-1, 3))
    xv, yv = next(iter(b.val))
    assert xv.shape == (6, 3, res, res) and yv.tolist() == [0, 1, 2, 3, 4, 5]


def test_cifar10_parent_folder_and_subset(tmp_path):
    write_cifar10(tmp_path / "cifar-10-batches-py")
    b = build_data(f"cifar10:{tmp_path}", resolution=32, batch_size=8, subset=16)
    assert b.train_size == 16 and len(b.train) == 2


def test_cifar100_with_augmentation(tmp_path):
    write_cifar100(tmp_path)
    b = build_data(f"cifar100:{tmp_path}", resolution=32, batch_size=10, augment=True, seed=2)
    assert (b.num_classes, b.train_size, b.val_size) == (100, 30, 7)
    batches = list(b.train)
    assert len(batches) == 3
    x, y = torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])
    assert x.shape == (30, 3, 32, 32) and sorted(y.tolist()) == list(range(30))
    again = build_data(f"cifar100:{tmp_path}", resolution=32, batch_size=10, augment=True, seed=2)
    assert torch.equal(torch.cat([x for x, _ in again.train]), x)
    assert torch.equal(next(iter(b.val))[1], torch.arange(7))


def test_cifar_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist") as e:
        build_data(f"cifar10:{tmp_path / 'missing'}")
    assert "PATH/data_batch_1..5 and PATH/test_batch" in str(e.value)
    write_cifar10(tmp_path / "c10")
    (tmp_path / "c10" / "test_batch").unlink()
    with pytest.raises(DataError, match="lacks test_batch") as e:
        build_data(f"cifar10:{tmp_path / 'c10'}")
    assert "cifar-10-python.tar.gz" in str(e.value)
    write_cifar100(tmp_path / "c100")
    with pytest.raises(DataError, match=r"lacks data_batch_1, .*test_batch"):
        build_data(f"cifar10:{tmp_path / 'c100'}")
    with pytest.raises(DataError, match="PATH/train and PATH/test"):
        build_data(f"cifar100:{tmp_path / 'c10'}")
    # right files, wrong content
    bad = tmp_path / "bad"
    write_cifar100(bad)
    with open(bad / "train", "wb") as f:
        pickle.dump({b"data": np.zeros((4, 1024), np.uint8), b"fine_labels": [0] * 4}, f)
    with pytest.raises(DataError, match=r"expected \(N, 3072\) uint8"):
        build_data(f"cifar100:{bad}")
    with open(bad / "train", "wb") as f:
        pickle.dump({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 4}, f)
    with pytest.raises(DataError, match=r"lacks the key\(s\) \['fine_labels'\]"):
        build_data(f"cifar100:{bad}")
    (bad / "train").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot unpickle"):
        build_data(f"cifar100:{bad}")


def test_loading_leaves_global_rng_alone(tmp_path):
    """The trainer seeds torch and random itself; iterating the data must not move them."""
    import random

    write_pngs(tmp_path / "train", 4)
    write_pngs(tmp_path / "val", 1)
    b = build_data(f"imagefolder:{tmp_path}", resolution=32, batch_size=4, augment=True)
    torch_state, py_state = torch.get_rng_state(), random.getstate()
    list(b.train), list(b.val)
    assert torch.equal(torch.get_rng_state(), torch_state) and random.getstate() == py_state


def test_an_auto_augment_policy_reaches_timms_transform(tmp_path):
    write_pngs(tmp_path / "train", 2)
    write_pngs(tmp_path / "val", 1)
    bundle = build_data(f"imagefolder:{tmp_path}", resolution=32, batch_size=2, augment="rand-m9-mstd0.5-inc1")
    assert "RandAugment" in repr(bundle.train.dataset.base.transform)
    plain = build_data(f"imagefolder:{tmp_path}", resolution=32, batch_size=2, augment=True)
    assert "RandAugment" not in repr(plain.train.dataset.base.transform)
    assert next(iter(bundle.train))[0].shape == (2, 3, 32, 32)
