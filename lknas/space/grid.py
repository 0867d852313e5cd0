"""PeLK's peripheral sharing grid, as far as the space needs it: k' <-> r_c.

The grid itself is `lknas.ops.peripheral.peripheral_grid`, the one the model is built with, so the
space and the model always agree on k'.
"""
from __future__ import annotations


def grid_length(k: int, r_c: int, m: int = 2) -> int:
    """k', the number of shared segments per axis."""
    from lknas.ops.peripheral import peripheral_grid  # imported lazily: only k_prime needs it

    return len(peripheral_grid(k, r_c, m))


def r_c_for_k_prime(k: int, k_prime: int, m: int = 2) -> int | None:
    """The smallest r_c whose grid over a k-kernel has k_prime segments, or None if none does."""
    for r_c in range((k - 1) // 2 + 1):
        if grid_length(k, r_c, m) == k_prime:
            return r_c
    return None


def possible_k_primes(k: int, m: int = 2) -> list[int]:
    """Every k' a k-kernel can have (for error messages)."""
    return sorted({grid_length(k, r_c, m) for r_c in range((k - 1) // 2 + 1)})
