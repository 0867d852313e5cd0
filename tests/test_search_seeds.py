import pytest

from lknas import load_space
from lknas.errors import LknasError
from lknas.search.seeds import arch_to_params, seed_points
from lknas.space.loader import bundled_spaces


@pytest.mark.parametrize("name", [n for n in bundled_spaces() if not n.startswith("reference/")])
def test_sampled_architectures_map_back_to_their_parameters(name):
    space = load_space(name)
    for seed in range(8):
        arch = space.sample(seed)
        params, why = arch_to_params(space, arch)
        assert params is not None, why
        import optuna

        assert space.suggest(optuna.trial.FixedTrial(params)).hash() == arch.hash()


def test_an_architecture_outside_the_space_is_skipped_with_the_key():
    points, skipped = seed_points(load_space("peleK_space.yaml"), "search_spaces/reference/pelk_t.yaml")
    assert points == []
    assert "reparam is 5 there, outside choice 0, 3" in skipped[0]  # the first key that differs


def test_a_directory_of_architectures(tmp_path):
    space = load_space("replknet_space.yaml")
    for seed in range(3):
        (tmp_path / f"a{seed}.yaml").write_text(space.sample(seed).to_yaml())
    points, skipped = seed_points(space, tmp_path)
    assert len(points) == 3 and not skipped


def test_a_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(LknasError, match="no such file or directory"):
        seed_points(load_space("replknet_space.yaml"), tmp_path / "nope")
