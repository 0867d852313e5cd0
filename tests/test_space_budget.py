"""A space's largest model against the memory budget, priced before anything is built."""
from __future__ import annotations

from pathlib import Path

import pytest

import lknas.models.net
from lknas.errors import LknasError, SpaceError
from lknas.models.estimate import estimate
from lknas.space import bundled_spaces, load_space, parse_space
from lknas.space.budget import check_arch_budget, largest_model

SPACES = bundled_spaces(Path(__file__).resolve().parents[1] / "search_spaces")
HUGE = {"stages": [{"depth": 64, "width": 4096, "kernel": 31}] * 4, "mlp_ratio": 8}


@pytest.mark.parametrize("name", SPACES)
def test_the_largest_model_bounds_every_sample_and_is_tight_for_fixed_spaces(name):
    sp = load_space(name)
    res, batch = sp.train.resolution, sp.train.batch_size
    bound = largest_model(sp.template, res, batch, num_classes=10)
    if sp.is_fixed:
        assert bound == estimate(sp.fixed(), res, batch, num_classes=10)
        return
    sizes = [estimate(sp.sample(seed), res, batch, num_classes=10) for seed in range(60)]
    assert max(e.params for e in sizes) <= bound.params
    assert max(e.total_bytes for e in sizes) <= bound.total_bytes < 2 * max(e.total_bytes for e in sizes)


def test_a_space_over_the_budget_is_refused_with_the_numbers(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(lknas.models.net.LKNet, "__init__", never)
    monkeypatch.delenv("LKNAS_MAX_MODEL_GB", raising=False)
    with pytest.raises(SpaceError) as err:
        parse_space(HUGE, "huge.yaml")
    (problem,) = err.value.problems
    assert problem.path == "stages"
    assert "params" in problem.message and "GB of activations at 64x64, batch 64" in problem.message
    assert "over the 64 GB budget" in problem.message and "LKNAS_MAX_MODEL_GB=" in problem.message


def test_the_budget_is_set_by_the_environment(monkeypatch):
    need = largest_model(parse_space({"stages": [{"depth": 1, "width": 8, "kernel": 3}]}).template, 64, 64)
    monkeypatch.setenv("LKNAS_MAX_MODEL_GB", str(need.total_bytes / 1e9 * 0.9))
    with pytest.raises(SpaceError, match="budget"):
        parse_space({"stages": [{"depth": 1, "width": 8, "kernel": 3}]})
    monkeypatch.setenv("LKNAS_MAX_MODEL_GB", "off")
    assert parse_space(HUGE).template.stages
    monkeypatch.setenv("LKNAS_MAX_MODEL_GB", "lots")
    with pytest.raises(SpaceError, match="LKNAS_MAX_MODEL_GB='lots' is not a size"):
        parse_space({"stages": [{"depth": 1, "width": 8, "kernel": 3}]})


def test_the_budget_uses_the_training_resolution_and_batch(monkeypatch):
    monkeypatch.setenv("LKNAS_MAX_MODEL_GB", "1")
    small = {"stages": [{"depth": 2, "width": 64, "kernel": 7}] * 4}
    assert parse_space({**small, "train": {"resolution": 64, "batch_size": 32}})
    with pytest.raises(SpaceError, match="at 1024x1024, batch 256"):
        parse_space({**small, "train": {"resolution": 1024, "batch_size": 256}})


def test_one_architecture_is_checked_at_the_recipe_resolution(monkeypatch):
    monkeypatch.setenv("LKNAS_MAX_MODEL_GB", "4")
    arch = load_space("reference/convnext_t.yaml").fixed()
    assert check_arch_budget(arch, 64, 16).params == 28_589_128
    with pytest.raises(LknasError, match="at 224x224, batch 512"):
        check_arch_budget(arch, 224, 512)


def test_training_refuses_an_architecture_over_the_budget_before_building_it(monkeypatch, tmp_path):
    from lknas.space.configs import TrainConfig
    from lknas.train.full import TrainRecipe, train_full
    from lknas.train.proxy import train_proxy
    from tests.helpers import ToyData, small_arch

    monkeypatch.setenv("LKNAS_MAX_MODEL_GB", "0.001")  # 1 MB: less than the toy net needs at batch 32
    monkeypatch.setattr(lknas.models.net.LKNet, "__init__", lambda *a, **k: pytest.fail("a model was built"))
    with pytest.raises(LknasError, match="over the 0.001 GB budget"):
        train_full(small_arch(), ToyData(), TrainRecipe(epochs=1, batch_size=32, resolution=32), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(LknasError, match="over the 0.001 GB budget"):
        train_proxy(small_arch(), TrainConfig(resolution=32, batch_size=32), ToyData())
