"""PeLK's peripheral sharing grid: fine at the centre, exponentially coarser towards the border."""
from __future__ import annotations

__all__ = ["peripheral_grid", "peripheral_k_prime"]


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


def peripheral_grid(k: int, r_c: int, m: int = 2) -> list[int]:
    """The full 1-D sharing grid of a peripheral kernel of size `k`, outer edge to outer edge.

    Positions with |i| <= r_c are fine (segments of size 1); the j-th segment beyond has size
    m**j; the outermost segment is cut to what remains of (k-1)/2. The grid is symmetric, sums to
    `k`, and its length is k' (the compact kernel size). If 2*r_c+1 >= k every segment has size 1.

    >>> peripheral_grid(31, 2)
    [7, 4, 2, 1, 1, 1, 1, 1, 2, 4, 7]
    """
    _check(k, r_c, m)
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


def peripheral_k_prime(k: int, r_c: int, m: int = 2) -> int:
    """Side of the compact k' x k' parameter grid of a peripheral kernel."""
    return len(peripheral_grid(k, r_c, m))
