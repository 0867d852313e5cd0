"""The match task: labels mean what they say, and only comparing the two marks tells them."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lknas.data import DataError, build_data
from lknas.data import match


def _geometry(n=2048, seed=0, resolution=64, **options):
    params = match.resolve_options({k: str(v) for k, v in options.items()})
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2)
    img, geo = match.render_chunk(rng, labels, resolution, params, with_geometry=True)
    return labels, img, geo, params


def _crop(img: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Each image's glyph box around its centre (n, 3c, 3c), as the renderer places it."""
    res = img.shape[1]
    c = match.cell_size(res)
    top_left = np.clip(np.rint(centres * res - 1.5 * c).astype(int), 0, res - 3 * c)
    return np.stack([im[y:y + 3 * c, x:x + 3 * c] for im, (x, y) in zip(img, top_left)])


def test_the_glyphs_are_a_fixed_set_of_distinct_five_cell_patterns():
    glyphs = match.patterns(match.MAX_GLYPHS)
    assert glyphs.shape == (16, 3, 3) and (glyphs.reshape(16, 9).sum(1) == match.CELLS_ON).all()
    assert len({g.tobytes() for g in glyphs}) == 16
    assert (match.patterns(8) == glyphs[:8]).all()  # fewer glyphs are a prefix: no seed decides them


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_labels_mean_the_two_marks_show_the_same_pattern(resolution):
    labels, img, geo, params = _geometry(n=512, resolution=resolution)
    assert ((geo["first_glyph"] == geo["second_glyph"]) == (labels == 1)).all()
    first, second = _crop(img, geo["first"]), _crop(img, geo["second"])
    same_pixels = (first == second).reshape(len(img), -1).all(1)
    assert (same_pixels == (labels == 1)).all()  # what is drawn, not only the indices
    c = match.cell_size(resolution)
    assert ((img > 0).reshape(len(img), -1).sum(1) == 2 * match.CELLS_ON * c * c).all()  # two whole glyphs
    d = np.linalg.norm(geo["second"] - geo["first"], axis=1)
    lo, hi = (float(v) for v in params["distance"].split("-"))
    assert d.min() >= lo - 1e-9 and d.max() <= hi + 1e-9


def test_nothing_but_the_comparison_gives_the_label_away():
    labels, _, geo, _ = _geometry(n=8192)
    same, diff = labels == 1, labels == 0
    for key in ("first_glyph", "second_glyph"):  # each mark alone is uniform over the patterns in both classes
        freq_same = np.bincount(geo[key][same], minlength=8) / same.sum()
        freq_diff = np.bincount(geo[key][diff], minlength=8) / diff.sum()
        assert np.abs(freq_same - freq_diff).max() < 0.03
    for key in ("first", "second"):  # where the marks are
        assert np.abs(geo[key][same].mean(0) - geo[key][diff].mean(0)).max() < 0.02
    dist = np.linalg.norm(geo["second"] - geo["first"], axis=1)
    assert abs(np.median(dist[same]) - np.median(dist[diff])) < 0.02


def test_the_spec_reads_back_and_the_data_are_seeded():
    a = build_data("match:distance=0.2-0.6,glyphs=4,train=256,val=64", resolution=64, batch_size=16, cache=False)
    assert a.spec == "match:distance=0.2-0.6,glyphs=4,train=256,val=64" and a.num_classes == 2 and a.in_chans == 1
    b = build_data(a.spec, resolution=64, batch_size=16, cache=False)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.val.y, b.val.y)
    other = build_data(a.spec, resolution=64, batch_size=16, seed=1, cache=False)
    assert not torch.equal(a.train.x, other.train.x)
    assert 0.4 < a.train.y.float().mean() < 0.6


@pytest.mark.parametrize("spec,needle", [
    ("match:distance=0.05-0.5", "glyphs closer than 0.1"), ("match:distance=0.9-0.2", "distance must be LO-HI"),
    ("match:glyphs=1", "glyphs must be an integer in 2..16"), ("match:glyphs=x", "glyphs must be an integer"),
    ("match:colour=red", "unknown option"),
])
def test_bad_options(spec, needle):
    with pytest.raises(DataError, match=needle):
        build_data(spec, train_size=16, val_size=16, batch_size=8, cache=False)
