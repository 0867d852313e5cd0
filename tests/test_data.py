"""lknas.data: names and errors, the synthetic sets (determinism, balance, shapes, cache) and the
loaders' epoch semantics."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lknas.data.pathfinder as pathfinder_mod
from lknas.data import SYNTHETIC, DataBundle, DataError, build_data, parse_spec
from lknas.data.base import KINDS
from lknas.errors import LknasError


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LKNAS_CACHE", str(tmp_path / "cache"))


def small(name, **kw):
    kw.setdefault("resolution", 32)
    kw.setdefault("batch_size", 16)
    kw.setdefault("train_size", 96)
    kw.setdefault("val_size", 40)
    return build_data(name, **kw)


def all_batches(loader):
    xs, ys = zip(*list(loader))
    return torch.cat(xs), torch.cat(ys)


# ----------------------------------------------------------------------------- names and errors
def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(DataError) as e:
        build_data("mnist")
    msg = str(e.value)
    assert "unknown data set 'mnist'" in msg
    for kind in KINDS:  # every kind, the default task `pointer` too
        assert f"'{kind}" in msg
    assert "did you mean" not in msg
    assert isinstance(e.value, LknasError)


def test_a_misspelt_name_gets_the_closest_kind():
    with pytest.raises(DataError, match=r"unknown data set 'pointr:miss=20' \(did you mean 'pointer'\?\)"):
        parse_spec("pointr:miss=20")


def test_the_command_line_help_names_every_kind():
    from lknas.cli import DATA_HELP

    assert all(kind in DATA_HELP for kind in KINDS)


@pytest.mark.parametrize(
    "name, needle",
    [
        ("pathfinder:difficulty=extreme", "easy, medium, hard"),
        ("pathfinder:hardest", "easy, medium, hard"),
        ("pathfinder:length=zero", "length must be an integer"),
        ("pathfinder:colour=red", "unknown option(s) ['colour']"),
        ("shapes:classes=12", "classes must be an integer in 2..8"),
        ("shapes:train=abc", "train size must be an integer"),
        ("cifar10:", "cifar10 needs a path"),
    ],
)
def test_bad_options_say_what_is_valid(name, needle):
    with pytest.raises(DataError, match=None) as e:
        small(name, train_size=None, val_size=None)
    assert needle in str(e.value)


def test_bad_arguments():
    with pytest.raises(DataError, match="resolution must be in 32..256"):
        small("shapes", resolution=16)
    with pytest.raises(DataError, match="fewer than batch_size 128"):
        small("shapes", batch_size=128)
    with pytest.raises(DataError, match="subset must be an integer"):
        small("shapes", subset=0)


@pytest.mark.parametrize(
    "name, kwargs, needle",
    [
        ("pathfinder:train=10000000", {}, "train size must be an integer from 1 to 1000000"),
        ("shapes:val=" + "9" * 5000, {}, "val size must be an integer from 1 to 1000000, got '9999"),
        ("shapes:train=1000000", {"resolution": 256}, "over 8 GiB"),
        ("pathfinder:distractors=1000", {}, "distractors must be an integer in 0..20"),
        ("shapes", {"train_size": 10**7}, "train size must be an integer from 1 to 1000000"),
        ("shapes", {"batch_size": 10**6}, "batch_size must be an integer from 1 to 4096"),
        ("shapes", {"subset": 10**12}, "subset must be an integer from 1 to 100000000"),
        ("shapes", {"workers": 10**4}, "workers must be an integer from 0 to 256"),
        ("cifar10:/nowhere", {"resolution": 10**5}, "resolution must be an integer from 8 to 1024"),
    ],
)
def test_every_size_is_capped_before_anything_is_generated(name, kwargs, needle, monkeypatch):
    from lknas.data import shapes

    monkeypatch.setattr(shapes, "generate", lambda *a, **k: pytest.fail("generated data"))
    with pytest.raises(DataError) as e:
        build_data(name, **kwargs)
    assert needle in str(e.value) and len(str(e.value)) < 400


def test_parse_spec():
    s = parse_spec("Pathfinder:hard, distractors=4")
    assert (s.kind, s.path, s.options) == ("pathfinder", None, {"": "hard", "distractors": "4"})
    s = parse_spec("imagefolder:/data/a:b=c")
    assert (s.kind, s.path) == ("imagefolder", "/data/a:b=c")


# ----------------------------------------------------------------------------- synthetic sets
@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_synthetic_deterministic_per_seed(name):
    a = small(name, seed=3, cache=False)
    b = small(name, seed=3, cache=False)
    c = small(name, seed=4, cache=False)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.train.y, b.train.y)
    assert torch.equal(a.val.x, b.val.x)
    assert not torch.equal(a.train.x, c.train.x)
    assert not torch.equal(a.val.x, c.val.x)
    assert not torch.equal(a.train.x[: len(a.val.x)], a.val.x)  # train and val differ


@pytest.mark.parametrize(
    "name, classes, chans", [("pathfinder", 2, 1), ("pointer", 2, 1), ("shapes", 8, 3), ("shapes:classes=5", 5, 3)]
)
@pytest.mark.parametrize("res", [32, 48, 64])
def test_synthetic_shapes_and_dtypes(name, classes, chans, res):
    b = small(name, resolution=res, batch_size=32, train_size=100, val_size=37)
    assert isinstance(b, DataBundle)
    assert (b.num_classes, b.in_chans, b.resolution, b.train_size, b.val_size) == (classes, chans, res, 100, 37)
    assert b.name == name.split(":")[0] and b.spec.startswith(b.name + ":")
    assert len(b.train) == 3  # 100 // 32, last partial batch dropped
    batches = list(b.train)
    assert len(batches) == 3
    for x, y in batches:
        assert x.shape == (32, chans, res, res) and x.dtype == torch.float32
        assert y.shape == (32,) and y.dtype == torch.int64
        assert torch.isfinite(x).all() and 0 <= y.min() and y.max() < classes
    assert [len(y) for _, y in b.val] == [32, 5]
    assert len(b.val) == 2
    assert len(b.classes) == classes


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_synthetic_extreme_resolutions(name):
    for res in (32, 256):
        b = small(name, resolution=res, batch_size=8, train_size=8, val_size=8, cache=False)
        x, _ = next(iter(b.train))
        assert x.shape[-2:] == (res, res)


@pytest.mark.parametrize("name, classes", [("pathfinder:hard", 2), ("pathfinder:length=6,min_length=2", 2),
                                           ("pointer", 2), ("shapes", 8)])
def test_synthetic_balanced(name, classes):
    b = small(name, train_size=1024, val_size=256, batch_size=64)
    train_counts = torch.bincount(b.train.y, minlength=classes)
    assert (train_counts == 1024 // classes).all()  # exact on whole chunks of 128
    assert (torch.bincount(b.val.y, minlength=classes) == 256 // classes).all()
    for x in (b.train.x, b.val.x):  # every image has content
        assert (x.flatten(1).float().std(dim=1) > 0).all()


def test_normalization_uses_the_train_statistics():
    b = small("shapes", train_size=200)
    x, _ = all_batches(b.train)
    assert abs(x.mean().item()) < 0.1 and abs(x.std().item() - 1) < 0.1
    p = small("pathfinder", train_size=200)
    assert p.mean[0] < 0.2  # white curves on black
    x, _ = all_batches(p.train)
    assert abs(x.mean().item()) < 0.1 and abs(x.std().item() - 1) < 0.1


def test_smaller_sizes_are_prefixes_and_val_is_independent_of_train():
    big = small("shapes", train_size=600, cache=False)
    few = small("shapes", train_size=100, cache=False)
    sub = small("shapes", train_size=600, subset=100, cache=False)
    assert torch.equal(big.train.x[:100], few.train.x)
    assert torch.equal(sub.train.x, few.train.x) and sub.train_size == 100
    assert torch.equal(big.val.x, few.val.x)


def test_options_change_the_task():
    easy = small("pathfinder:easy", cache=False)
    hard = small("pathfinder:difficulty=hard", cache=False)
    assert easy.spec.startswith("pathfinder:difficulty=easy,length=6,distractors=1")
    assert hard.spec.startswith("pathfinder:difficulty=hard,length=14,distractors=3")
    assert hard.train.x.float().mean() > 1.5 * easy.train.x.float().mean()  # more, longer curves
    custom = small("pathfinder:length=3,distractors=0,train=64,val=16", train_size=None, val_size=None)
    assert (custom.train_size, custom.val_size) == (64, 16)
    assert custom.info["params"] == {"difficulty": "easy", "length": 3, "distractors": 0}


def test_pathfinder_mixed_lengths():
    """min_length: each image draws its path length; a fixed-length set is unchanged by the option."""
    fixed = small("pathfinder:length=6,distractors=0", cache=False)
    same = small("pathfinder:length=6,min_length=6,distractors=0", cache=False)
    assert torch.equal(fixed.train.x, same.train.x)  # min_length = length is the fixed-length set
    mixed = small("pathfinder:length=6,min_length=2,distractors=0", cache=False)
    assert mixed.info["params"]["min_length"] == 2 and not torch.equal(mixed.train.x, fixed.train.x)
    ink = lambda b: b.train.x.float().flatten(1).mean(1)  # noqa: E731
    assert ink(mixed).mean() < ink(fixed).mean()  # shorter curves on average
    with pytest.raises(DataError, match="min_length"):
        small("pathfinder:length=6,min_length=7", cache=False)


def test_pathfinder_classes_share_ink():
    """Both classes draw the same curves; only the second marker moves, so the amount of ink does
    not give the label away."""
    b = small("pathfinder:medium", train_size=960, cache=False)
    ink = b.train.x.float().flatten(1).mean(1)
    pos, neg = ink[b.train.y == 1].mean(), ink[b.train.y == 0].mean()
    assert abs(pos - neg) / ink.mean() < 0.03


def test_pathfinder_marker_distance_does_not_give_the_label_away():
    """|marker1 - marker2| has the same distribution in both classes (the decoy end of curve B is
    drawn like curve A's end)."""
    rng = np.random.default_rng(0)
    a, b = pathfinder_mod._place(rng, 4000, 6)
    d_pos = np.linalg.norm(a[:, -1] - a[:, 0], axis=1)
    d_neg = np.linalg.norm(b[:, -1] - a[:, 0], axis=1)
    assert abs(d_pos.mean() - d_neg.mean()) < 0.01
    assert abs(np.median(d_pos) - np.median(d_neg)) < 0.015
    # and curve B really is another curve: its far end is not A's
    assert np.linalg.norm(b[:, 0] - a[:, 0], axis=1).mean() > 0.1


# ----------------------------------------------------------------------------- cache
@pytest.mark.parametrize("name, module", [(name, module) for name, module in sorted(SYNTHETIC.items())])
def test_disk_cache_is_hit_the_second_time(name, module, monkeypatch, tmp_path):
    calls = []
    real = module.generate

    def counting(*args, **kw):
        calls.append(args)
        return real(*args, **kw)

    monkeypatch.setattr(module, "generate", counting)
    first = small(name)
    assert len(calls) == 2  # train and val
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(files) == 2 and all(f.endswith(".pt") for f in files)
    second = small(name)
    assert len(calls) == 2  # nothing generated
    assert torch.equal(first.train.x, second.train.x) and torch.equal(first.val.y, second.val.y)
    small(name, seed=1)  # another key: generated
    assert len(calls) == 4
    small(name, cache=False)
    assert len(calls) == 6


def test_unreadable_cache_file_is_regenerated(tmp_path):
    first = small("pathfinder")
    for p in (tmp_path / "cache").iterdir():
        p.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="unreadable"):
        again = small("pathfinder")
    assert torch.equal(first.train.x, again.train.x)


# ----------------------------------------------------------------------------- epochs
def test_train_reshuffles_each_epoch_deterministically():
    a = small("shapes", seed=5)
    b = small("shapes", seed=5)
    a0, a1 = all_batches(a.train), all_batches(a.train)
    b0, b1 = all_batches(b.train), all_batches(b.train)
    assert torch.equal(a0[0], b0[0]) and torch.equal(a1[1], b1[1])  # same seed, same epochs
    assert not torch.equal(a0[1], a1[1])  # epoch 1 is another order
    assert sorted(a0[1].tolist()) != [] and len(a0[1]) == 96
    # epoch e uses seed + e: epoch 1 of seed 5 is epoch 0 of a loader seeded 6 over the same data
    c = small("shapes", seed=5)
    c.train.seed = 6
    assert torch.equal(all_batches(c.train)[0], a1[0])
    a.train.set_epoch(0)
    assert torch.equal(all_batches(a.train)[0], a0[0])
    # val: fixed order, every sample once
    v0, v1 = all_batches(a.val), all_batches(a.val)
    assert torch.equal(v0[0], v1[0]) and torch.equal(v0[1], a.val.y)


def test_synthetic_augmentation_flips_deterministically():
    plain = small("pathfinder", augment=False)
    aug = small("pathfinder", augment=True)
    aug2 = small("pathfinder", augment=True)
    (xp, yp), (xa, ya), (xa2, _) = (all_batches(b.train) for b in (plain, aug, aug2))
    assert torch.equal(yp, ya) and torch.equal(xa, xa2)
    assert not torch.equal(xp, xa)
    flipped = [
        any(torch.equal(xa[i], f) for f in (xp[i], xp[i].flip(-1), xp[i].flip(-2), xp[i].flip(-1, -2)))
        for i in range(len(xa))
    ]
    assert all(flipped)
    assert torch.equal(all_batches(aug.val)[0], all_batches(plain.val)[0])  # val never augmented


def test_pathfinder_length_is_capped():
    with pytest.raises(DataError, match=r"length must be an integer in 1..16"):
        small("pathfinder:length=17")


def _reached(img: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Flood fill over ink pixels (8-connected) from `start` masks; (n,H,W) bool."""
    ink = img > 0
    reach = start & ink
    while True:
        grown = torch.nn.functional.max_pool2d(reach[:, None].float(), 3, 1, 1)[:, 0].bool() & ink
        if torch.equal(grown, reach):
            return reach
        reach = grown


def test_pathfinder_labels_mean_connected(monkeypatch):
    """With solid curves, the first marker's ink reaches the second one in every positive, and
    only where curves happen to cross in the negatives."""
    monkeypatch.setattr(pathfinder_mod, "DASH", 1.0)
    rng = np.random.default_rng(1)
    labels = np.arange(128) % 2
    res = 64
    img, markers = pathfinder_mod.render_chunk(rng, labels, res, 6, 1, with_markers=True)
    img = torch.from_numpy(img)
    pix = torch.from_numpy(np.floor(markers * res).astype(np.int64))  # (n, 2, 2) as (x, y)
    n = torch.arange(len(img))
    start = torch.zeros_like(img, dtype=torch.bool)
    start[n, pix[:, 0, 1], pix[:, 0, 0]] = True
    joined = _reached(img, start)[n, pix[:, 1, 1], pix[:, 1, 0]]
    y = torch.from_numpy(labels)
    assert joined[y == 1].all()
    assert joined[y == 0].float().mean() < 0.5  # crossings join some negatives, not most


def test_sizes_are_for_synthetic_sets_only(tmp_path):
    with pytest.raises(DataError, match="use subset"):
        build_data(f"cifar10:{tmp_path}", train_size=10)
    b = small("shapes", train_size=np.int64(32), batch_size=np.int64(16))
    assert b.train_size == 32 and len(b.train) == 2


def test_synthetic_loading_leaves_global_rng_alone():
    b = small("shapes", augment=True)
    state = torch.get_rng_state()
    list(b.train), list(b.val)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("name", ["pathfinder:medium,train=64", "shapes:classes=3,train=48"])
def test_spec_round_trips(name):
    a = build_data(name, resolution=32, batch_size=16, cache=False)
    b = build_data(a.spec, resolution=32, batch_size=16, cache=False)
    assert a.spec == b.spec and torch.equal(a.train.x, b.train.x) and torch.equal(a.val.x, b.val.x)


def test_order_seed_keeps_the_data_and_changes_the_order():
    """A re-training with another seed (confirm, fidelity) sees the same images in another order."""
    a = small("pointer", seed=0, cache=False)
    b = small("pointer", seed=0, order_seed=5, cache=False)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.val.x, b.val.x)
    first = lambda bundle: next(iter(bundle.train))[1]  # noqa: E731  (the first batch of epoch 0)
    fb = first(b)
    assert not torch.equal(first(a), fb)
    assert torch.equal(fb, first(small("pointer", seed=0, order_seed=5, cache=False)))
