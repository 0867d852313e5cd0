"""PeLK's peripheral sharing grid: fine at the centre, exponentially coarser towards the border."""
from __future__ import annotations

__all__ = ["GRID_ORDERS", "SHARE_SCALES", "peripheral_grid", "peripheral_k_prime", "reversed_grid"]

from lknas.arch import GRID_ORDERS, SHARE_SCALES


def _check(k: int, r_c: int, m: int) -> None:
    for name, value in (("k", k), ("r_c", r_c), ("m", m)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if k < 1 or k % 2 == 0:
        raise ValueError(f"kernel size k must be odd and >= 1, got {k}")
    if r_c < 0:
        raise ValueError(f"central fine radius r_c must be >= 0, got {r_c}")
    if m < 1:
        raise ValueError(f"growth factor m must be >= 1, got {m}")


def peripheral_grid(k: int, r_c: int, m: int = 2, order: str = "fine_centre") -> list[int]:
    """The full 1-D sharing grid of a peripheral kernel of size `k`, outer edge to outer edge.

    Positions with |i| <= r_c are fine (segments of size 1); the j-th segment beyond has size
    m**j; the outermost segment is cut to what remains of (k-1)/2. The grid is symmetric, sums to
    `k`, and its length is k' (the compact kernel size). If 2*r_c+1 >= k every segment has size 1.

    `order="coarse_centre"` gives PeLK's ablation, the same grid reversed (`reversed_grid`).

    >>> peripheral_grid(31, 2)
    [7, 4, 2, 1, 1, 1, 1, 1, 2, 4, 7]
    """
    _check(k, r_c, m)
    if order not in GRID_ORDERS:
        raise ValueError(f"grid order must be one of {', '.join(GRID_ORDERS)}, got {order!r}")
    if order == "coarse_centre":
        return reversed_grid(peripheral_grid(k, r_c, m))
    half = (k - 1) // 2
    if 2 * r_c + 1 >= k:
        return [1] * k
    outward = [1] * r_c  # centre excluded, from the centre out
    covered = r_c
    j = 1
    while covered < half:
        size = min(m**j, half - covered)
        outward.append(size)
        covered += size
        j += 1
    return outward[::-1] + [1] + outward


def reversed_grid(grid: list[int]) -> list[int]:
    """PeLK's reversed grid (coarse centre): the segments of each half, coarsest at the centre.

    A half runs from the outer edge to the centre cell, which it includes. PeLK's half grows from
    the centre out ([8,4,2,1,1,1] at k=33); reversed, it shrinks ([1,1,1,2,4,8]) and its largest
    segment holds the centre, shared by both halves (2 s - 1 wide). The segments are sorted rather
    than read backwards so that a cut outermost segment (k=17, r_c=1: [1,4,2,1,1]) does not land a
    fine cell at the centre. The sum (k) and the length (k') are kept: so is the parameter count.

    >>> reversed_grid([7, 4, 2, 1, 1, 1, 1, 1, 2, 4, 7])
    [1, 1, 1, 2, 4, 13, 4, 2, 1, 1, 1]
    """
    half = sorted(grid[: len(grid) // 2 + 1])  # outer edge -> centre: fine -> coarse
    centre = 2 * half[-1] - 1
    return half[:-1] + [centre] + half[:-1][::-1]


def peripheral_k_prime(k: int, r_c: int, m: int = 2) -> int:
    """Side of the compact k' x k' parameter grid of a peripheral kernel."""
    return len(peripheral_grid(k, r_c, m))
