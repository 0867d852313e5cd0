"""The analytic size of a model: parameters exactly as built, activations within 2x of autograd's."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lknas.models import build_model
from lknas.models.estimate import estimate
from lknas.space import bundled_spaces, load_space

SPACES = bundled_spaces(Path(__file__).resolve().parents[1] / "search_spaces")


def archs(name: str, n: int):
    sp = load_space(name)
    return [sp.fixed()] if sp.is_fixed else [sp.sample(seed) for seed in range(n)]


@pytest.mark.parametrize("name", SPACES)
def test_params_equal_the_built_models(name):
    for arch in archs(name, 12):
        for num_classes, in_chans in ((10, 3), (1000, 1)):
            with torch.device("meta"):  # shapes only: nothing is allocated
                model = build_model(arch, num_classes=num_classes, in_chans=in_chans)
            built = sum(p.numel() for p in model.parameters())
            assert estimate(arch, 64, num_classes=num_classes, in_chans=in_chans).params == built, arch.summary()


def saved_activation_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps for the backward pass, parameters excluded."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(seen.values())


@pytest.mark.parametrize("name", ["peleK_space.yaml", "replknet_space.yaml", "unireplknet_space.yaml",
                                  "reference/pelk_t.yaml"])
def test_activation_memory_is_within_2x_of_what_autograd_keeps(name):
    torch.manual_seed(0)
    for arch in archs(name, 2):
        model = build_model(arch, num_classes=10).train()
        measured = saved_activation_bytes(model, torch.randn(2, 3, 64, 64))
        estimated = estimate(arch, 64, 2, num_classes=10).activation_bytes
        assert 0.7 * measured <= estimated <= 2.5 * measured, (arch.summary(), measured, estimated)


def test_memory_grows_with_batch_and_resolution():
    arch = archs("peleK_space.yaml", 1)[0]
    small, big_batch, big_res = estimate(arch, 64, 8), estimate(arch, 64, 16), estimate(arch, 128, 8)
    assert small.params == big_batch.params == big_res.params
    assert 1.9 < big_batch.activation_bytes / small.activation_bytes < 2.01
    assert 3.5 < big_res.activation_bytes / small.activation_bytes < 4.1
    assert small.total_bytes == 16 * small.params + small.activation_bytes
