import pytest

from lknas import load_space
from lknas.errors import LknasError
from lknas.search.seeds import arch_to_params, seed_points


@pytest.mark.parametrize("name", ["peleK_space", "replknet_space", "slak_space", "unireplknet_space", "convnext_space"])
def test_sampled_architectures_map_back_to_their_parameters(name):
    space = load_space(f"{name}.yaml")
    for seed in range(8):
        arch = space.sample(seed)
        params, why = arch_to_params(space, arch)
        assert params is not None, why
        import optuna

        assert space.suggest(optuna.trial.FixedTrial(params)).hash() == arch.hash()


def test_an_architecture_outside_the_space_is_skipped_with_the_key():
    points, skipped = seed_points(load_space("peleK_space.yaml"), "search_spaces/reference/pelk_t.yaml")
    assert points == []
    assert "stages[0].depth is 3 there, outside int 1..2" in skipped[0]


def test_a_directory_of_architectures(tmp_path):
    space = load_space("replknet_space.yaml")
    for seed in range(3):
        (tmp_path / f"a{seed}.yaml").write_text(space.sample(seed).to_yaml())
    points, skipped = seed_points(space, tmp_path)
    assert len(points) == 3 and not skipped


def test_a_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(LknasError, match="no such file or directory"):
        seed_points(load_space("replknet_space.yaml"), tmp_path / "nope")
