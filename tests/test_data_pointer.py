"""The pointer task: labels mean what they say, and nothing but the long-range relation tells them."""
from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch

from lknas.data import DataError, build_data
from lknas.data import pointer


def _geometry(n=2048, seed=0, **options):
    params = pointer.resolve_options({k: str(v) for k, v in options.items()})
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2)
    img, geo = pointer.render_chunk(rng, labels, 64, params, with_geometry=True)
    return labels, img, geo, params


def test_labels_mean_the_arrow_points_at_the_disk():
    labels, _, geo, params = _geometry()
    hits = np.all(np.isclose(geo["aim"], geo["disk"]), axis=1)
    assert (hits == (labels == 1)).all()
    d_disk = np.linalg.norm(geo["disk"] - geo["arrow"], axis=1)
    d_other = np.linalg.norm(geo["other"] - geo["arrow"], axis=1)
    assert np.allclose(d_disk, d_other)  # the other place is as far from the arrow as the disk
    assert (d_disk >= params["min_distance"] - 1e-9).all() and (d_disk <= params["max_distance"] + 1e-9).all()
    u, v = geo["disk"] - geo["arrow"], geo["other"] - geo["arrow"]
    angle = np.degrees(np.arccos(np.clip((u * v).sum(1) / (d_disk * d_other), -1, 1)))
    assert angle.min() >= params["miss"] - 1e-6  # a miss misses by at least `miss` degrees


def test_no_statistic_but_the_relation_gives_the_label_away():
    labels, img, geo, _ = _geometry(n=4096)
    hit, miss = labels == 1, labels == 0
    ink = img.reshape(len(img), -1).astype(float).mean(1)
    assert abs(ink[hit].mean() - ink[miss].mean()) / ink.mean() < 0.02  # the same strokes
    for key in ("arrow", "disk"):  # where things are
        assert np.abs(geo[key][hit].mean(0) - geo[key][miss].mean(0)).max() < 0.03  # ~4 standard errors
    heading = geo["aim"] - geo["arrow"]  # where the arrow points, and whether that is inwards
    inward = ((0.5 - geo["arrow"]) * heading).sum(1) > 0
    assert abs(inward[hit].mean() - inward[miss].mean()) < 0.04
    dist = np.linalg.norm(geo["disk"] - geo["arrow"], axis=1)
    assert abs(np.median(dist[hit]) - np.median(dist[miss])) < 0.02


def test_images_show_both_objects_at_any_resolution():
    for res in (32, 64, 128):
        b = build_data("pointer:train=64,val=16", resolution=res, batch_size=16, cache=False)
        raw = b.train.x.reshape(len(b.train.x), -1)
        assert (raw.max(1).values == 255).all()
        assert (raw.float().mean(1) > 0.004).all()


@pytest.mark.parametrize("spec,needle", [
    ("pointer:miss=1", "miss must be in 5..90"), ("pointer:distance=0.9-0.2", "distance must be LO-HI"),
    ("pointer:distance=far", "distance must be LO-HI"), ("pointer:colour=red", "unknown option"),
    ("pointer:distractors=20", "distractors must be in 0..8"),
])
def test_bad_options(spec, needle):
    with pytest.raises(DataError, match=needle):
        build_data(spec, train_size=16, val_size=16, batch_size=8, cache=False)


def test_distractors_keep_clear_of_the_arrow_and_both_places():
    labels, img, geo, params = _geometry(n=256, distractors=3)
    assert params["distractors"] == 3
    assert img.reshape(len(img), -1).astype(float).mean() > 0
    assert math.isfinite(float(img.mean()))


def test_a_miss_band_draws_near_misses_only():
    labels, _, geo, params = _geometry(miss="10-40")
    assert (params["miss"], params["max_miss"]) == (10.0, 40.0)
    u, v = geo["disk"] - geo["arrow"], geo["other"] - geo["arrow"]
    cos = (u * v).sum(1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))
    angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    assert angle.min() >= 10 - 1e-6 and angle.max() <= 40 + 1e-6
    assert angle.max() > 35 and angle.min() < 15  # the whole band, on both sides of the disk
    side = np.sign(u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0])
    assert 0.4 < (side > 0).mean() < 0.6


def test_a_full_band_is_the_plain_option_and_keeps_its_data():
    assert pointer.resolve_options({"miss": "20-180"}) == pointer.resolve_options({"miss": "20"})
    a = build_data("pointer:miss=20-180,train=128,val=16", batch_size=16, cache=False)
    b = build_data("pointer:miss=20,train=128,val=16", batch_size=16, cache=False)
    assert torch.equal(a.train.x, b.train.x)


@pytest.mark.parametrize("band", ["40-10", "2-30", "10-200", "ten-40"])
def test_bad_miss_bands(band):
    with pytest.raises(DataError, match="miss must be DEG in 5..90 or LO-HI"):
        build_data(f"pointer:miss={band}", train_size=16, val_size=16, batch_size=8, cache=False)


def test_a_distractor_range_draws_each_count_and_keeps_the_disks_clear():
    labels, img, geo, params = _geometry(n=3000, distractors="0-2")
    assert (params["min_distractors"], params["distractors"]) == (0, 2)
    extra = geo["distractors"]
    shown = (extra >= 0).all(-1)  # (n, 2): which disks are on the image
    assert (shown[:, 1] <= shown[:, 0]).all()  # a sample keeps its first `count` disks
    share = np.bincount(shown.sum(1), minlength=3) / len(labels)
    assert np.allclose(share, 1 / 3, atol=0.04)  # 0, 1 and 2 distractors equally often
    for place in ("arrow", "disk", "other"):
        gap = np.linalg.norm(extra - geo[place][:, None, :], axis=-1)[shown]
        assert gap.min() >= pointer.CLEARANCE - 1e-9
    ink = img.reshape(len(img), -1).astype(float).sum(1)
    assert ink[shown.sum(1) == 2].mean() > ink[shown.sum(1) == 0].mean()  # hidden disks are not drawn
    for count in (0, 1):  # each count comes with both labels, about equally
        assert 0.4 < labels[shown.sum(1) == count].mean() < 0.6


def test_a_fixed_distractor_count_keeps_its_parameters_and_data():
    assert "min_distractors" not in pointer.resolve_options({"distractors": "2"})  # nor its cache key
    _, _, geo, _ = _geometry(n=64, distractors=2)
    assert (geo["distractors"] >= 0).all()  # every sample shows both
    b = build_data("pointer:distractors=2,train=256,val=16", resolution=64, batch_size=16, cache=False)
    digest = hashlib.sha256(b.train.x.numpy().tobytes()).hexdigest()[:16]
    assert digest == "44cb035cb6cff0da"  # the images generated before ranges existed (134f8af)


@pytest.mark.parametrize("band", ["2-1", "0-9", "1-1", "0.5-2", "a-b"])
def test_bad_distractor_ranges(band):
    with pytest.raises(DataError, match="distractors must be N in 0..8 or LO-HI"):
        build_data(f"pointer:distractors={band}", train_size=16, val_size=16, batch_size=8, cache=False)
