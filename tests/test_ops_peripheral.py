import pytest

from lknas.ops import peripheral_grid, peripheral_k_prime

EXAMPLES = [
    # (k, r_c, full grid) -- REFERENCE.md, PeLK paper
    (5, 0, [2, 1, 2]),
    (31, 2, [7, 4, 2, 1, 1, 1, 1, 1, 2, 4, 7]),
]
HALF_EXAMPLES = [
    # (k, r_c, half grid outer-to-centre, k')
    (33, 2, [8, 4, 2, 1, 1, 1], 11),
    (51, 0, [11, 8, 4, 2, 1], 9),
    (51, 1, [10, 8, 4, 2, 1, 1], 11),
    (51, 2, [9, 8, 4, 2, 1, 1, 1], 13),
    (51, 3, [8, 8, 4, 2, 1, 1, 1, 1], 15),
]


@pytest.mark.parametrize("k,r_c,grid", EXAMPLES)
def test_full_grid_examples(k, r_c, grid):
    assert peripheral_grid(k, r_c) == grid
    assert peripheral_grid(k, r_c, m=2) == grid
    assert peripheral_k_prime(k, r_c) == len(grid)


@pytest.mark.parametrize("k,r_c,half,k_prime", HALF_EXAMPLES)
def test_half_grid_examples(k, r_c, half, k_prime):
    grid = peripheral_grid(k, r_c)
    assert grid[: len(half)] == half
    assert grid == half + half[-2::-1]
    assert len(grid) == k_prime == peripheral_k_prime(k, r_c)


def test_k31_has_k_prime_11():
    assert peripheral_k_prime(31, 2) == 11


@pytest.mark.parametrize("k", [1, 3, 5, 7, 9, 13, 17, 31, 33, 47, 49, 51, 67, 69, 101])
@pytest.mark.parametrize("r_c", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("m", [1, 2, 3])
def test_grid_properties(k, r_c, m):
    grid = peripheral_grid(k, r_c, m)
    assert sum(grid) == k
    assert grid == grid[::-1]
    assert len(grid) % 2 == 1 and grid[len(grid) // 2] == 1
    assert all(s >= 1 for s in grid)
    outward = grid[len(grid) // 2 + 1:]
    if 2 * r_c + 1 >= k:
        assert grid == [1] * k
        return
    # r_c fine positions, then m**j, the last one possibly cut short
    assert outward[:r_c] == [1] * r_c
    coarse = outward[r_c:]
    for j, s in enumerate(coarse[:-1], start=1):
        assert s == m**j
    assert 1 <= coarse[-1] <= m ** len(coarse)


def test_dense_when_centre_covers_kernel():
    assert peripheral_grid(5, 2) == [1] * 5
    assert peripheral_grid(7, 5) == [1] * 7
    assert peripheral_grid(1, 0) == [1]


def test_m1_is_dense():
    assert peripheral_grid(15, 0, m=1) == [1] * 15


@pytest.mark.parametrize(
    "args", [(4, 1, 2), (0, 0, 2), (-3, 0, 2), (5, -1, 2), (5, 0, 0), (5.0, 0, 2), (5, 0.5, 2), (True, 0, 2)]
)
def test_invalid_arguments(args):
    with pytest.raises(ValueError):
        peripheral_grid(*args)
    with pytest.raises(ValueError):
        peripheral_k_prime(*args)
