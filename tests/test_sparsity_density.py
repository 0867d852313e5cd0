import dataclasses

import pytest
import torch

from lknas.arch import SparsitySpec
from lknas.sparsity.density import (
    check_spec, erk_counts, erk_densities, initial_counts, snip_counts, snip_masks, uniform_counts,
)

SHAPES = {  # a 51x51 and a 13x13 depthwise kernel, a 5x5 branch, a linear layer
    "a": torch.Size((16, 1, 51, 51)), "b": torch.Size((16, 1, 13, 13)),
    "c": torch.Size((16, 1, 5, 5)), "d": torch.Size((64, 16)),
}
TOTAL = sum(s.numel() for s in SHAPES.values())


def test_erk_matches_the_rigl_formula():
    dens = erk_densities(SHAPES, 0.1)
    raw = {n: sum(s) / s.numel() for n, s in SHAPES.items()}
    # the small layers are capped at 1.0, the others share one scale factor eps
    assert dens["c"] == 1.0 and dens["d"] == 1.0
    eps = dens["a"] / raw["a"]
    assert dens["b"] == pytest.approx(eps * raw["b"])
    assert 0 < dens["a"] < dens["b"] < 1
    assert sum(dens[n] * SHAPES[n].numel() for n in SHAPES) == pytest.approx(0.1 * TOTAL)


@pytest.mark.parametrize("density", [0.05, 0.1, 0.3, 0.6, 0.9, 1.0])
def test_erk_counts_exact_total_within_one_weight_per_layer(density):
    dens = erk_densities(SHAPES, density)
    counts = erk_counts(SHAPES, density)
    assert sum(counts.values()) == round(density * TOTAL)
    assert all(abs(counts[n] - dens[n] * SHAPES[n].numel()) < 1 for n in SHAPES)
    assert all(1 <= counts[n] <= SHAPES[n].numel() for n in SHAPES)


def test_uniform_counts_and_bad_density():
    counts = uniform_counts(SHAPES, 0.6)
    assert all(abs(counts[n] - 0.6 * s.numel()) <= 0.5 for n, s in SHAPES.items())
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="density"):
            uniform_counts(SHAPES, bad)
        with pytest.raises(ValueError, match="density"):
            erk_counts(SHAPES, bad)


def test_snip_masks_global_top_k():
    scores = {"x": torch.tensor([[9.0, 1.0], [8.0, 2.0]]), "y": torch.tensor([7.0, 0.5, 3.0, 0.1])}
    masks = snip_masks(scores, 0.5)  # keep the 4 largest of 8: 9, 8, 7, 3
    assert masks["x"].tolist() == [[True, False], [True, False]]
    assert masks["y"].tolist() == [True, False, True, False]


def test_snip_counts_and_the_dense_from_rule():
    """SNIP counts are each layer's share of the global top-k; a layer that comes out at >= 0.99
    keeps all its weights (SLaK drops its mask), the others keep exactly their share."""
    scores = {
        "a": torch.cat([torch.full((99,), 10.0), torch.zeros(1)]).view(10, 10),
        "b": torch.cat([torch.full((101,), 5.0), torch.zeros(199)]).view(30, 10),
    }
    shapes = {n: s.shape for n, s in scores.items()}
    assert snip_counts(scores, 0.5) == {"a": 99, "b": 101}  # the top 200 of 400
    spec = SparsitySpec(density=0.5, init="snip")
    assert initial_counts(shapes, spec, scores) == {"a": 100, "b": 101}
    with pytest.raises(ValueError, match="needs SNIP scores"):
        initial_counts(shapes, spec)
    # the rule holds for every init
    assert initial_counts(shapes, SparsitySpec(density=0.995, init="uniform")) == {"a": 100, "b": 300}


@pytest.mark.parametrize("key,value", [("init", "SNIP"), ("snip_mask", "top-k")])
def test_unknown_names_are_rejected_with_the_key(key, value):
    spec = SparsitySpec(density=0.5, **{key: value})
    with pytest.raises(ValueError, match=rf"sparsity\.{key} .*{value!r}"):
        check_spec(spec)
    with pytest.raises(ValueError, match=rf"sparsity\.{key}"):
        initial_counts({"a": torch.Size((4, 4))}, spec)


def test_snip_mask_default_leaves_saved_architectures_unchanged():
    """Architectures saved before `snip_mask` existed keep their YAML text and hash (trial names,
    checkpoints, resumable searches); a non-default value round-trips."""
    from tests.helpers import small_arch

    arch = small_arch(density=0.6)
    assert set(arch.to_dict()["sparsity"]) == {"density", "prune_rate", "update_interval", "growth", "init",
                                               "targets"}
    topk = arch.replace(sparsity=dataclasses.replace(arch.sparsity, init="snip", snip_mask="topk"))
    assert topk.to_dict()["sparsity"]["snip_mask"] == "topk"
    for a in (arch, topk):
        assert type(a).from_yaml(a.to_yaml()) == a
    assert arch.hash() != topk.hash()
