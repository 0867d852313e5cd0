"""The reference architectures reproduce the papers' params and FLOPs (within 3%)."""
from __future__ import annotations

from pathlib import Path

import pytest

from lknas.measure import complexity
from lknas.models import build_model
from lknas.space import load_arch

REFERENCE = Path(__file__).resolve().parents[1] / "search_spaces" / "reference"

# (file, key, published value) from shared/REFERENCE.md; FLOPs are MACs at 224x224.
PUBLISHED = [
    ("replknet31b", "params", 79.3e6),
    ("replknet31b", "flops", 15.3e9),
    ("slak_t", "params", 50.7e6),
    ("slak_t", "params_nonzero", 30e6),
    ("slak_t", "flops_sparse", 5.0e9),
    ("pelk_t", "params", 29e6),
    ("pelk_t", "flops_sparse", 5.6e9),
    ("unireplknet_t", "params", 31e6),
    ("unireplknet_t", "flops", 4.9e9),
    ("convnext_t", "params", 28.6e6),
    ("convnext_t", "flops", 4.5e9),
    ("convnextv2_t", "params", 28.6e6),
    ("convnextv2_t", "flops", 4.47e9),
]


@pytest.fixture(scope="module")
def counts():
    """Counts with SLaK's decomposed stripes (its inference form), not this machine's measured
    choice, so that the numbers do not depend on timings."""
    cache: dict[str, dict] = {}

    def get(name: str) -> dict:
        if name not in cache:
            arch = load_arch(REFERENCE / f"{name}.yaml")
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("LKNAS_STRIPE_FORM", "decomposed")
                cache[name] = complexity(build_model(arch), resolution=224)
        return cache[name]

    return get


# (file, key) -> why a published number is not met yet (a strict xfail). SLaK-T's 5.0G sparse
# FLOPs were one: 5.20G at one density 0.6 for every layer; counted with the per-layer densities
# SLaK's SNIP assigns (stem, downsampling and head dense) they measure 4.95-4.97G.
KNOWN_GAPS = {
    ("pelk_t", "flops_sparse"): "5.39G (-3.7%) with the per-layer densities the file's init (ERK on the "
    "large kernels) assigns; one density 0.6 for every kernel, as counted before, gave 5.48G (-2.2%). "
    "Uniform 0.6 counted per layer: 5.49G; SNIP on the large kernels 5.09G; SLaK's default (SNIP on all "
    "weights) 3.28G. How PeLK counted its 5.6G is open",
}

CASES = [
    pytest.param(
        name, key, value, id=f"{name}-{key}",
        marks=[pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[name, key])]
        if (name, key) in KNOWN_GAPS else [],
    )
    for name, key, value in PUBLISHED
]


@pytest.mark.parametrize("name,key,published", CASES)
def test_reference_matches_published(counts, name, key, published):
    measured = counts(name)[key]
    assert abs(measured / published - 1) <= 0.03, f"{name} {key}: {measured:,} vs {published:,.0f}"


def test_convnext_t_params_equal_timm_exactly(counts):
    assert counts("convnext_t")["params"] == 28_589_128
