"""Cross-key rules of a space: what a key's value means depends on other keys of its stage.

- keys that only apply to some kernel types / blocks (`r_c` to peripheral kernels, `layer_scale`
  to convnext/unirep blocks) must be able to apply somewhere;
- `reparam`, `r_c` and `stripe_n` must fit the kernel (constants strictly; domains where even
  the most favourable combination cannot fit; the rest is resolved at sampling);
- `partial` and `width_multiplier` must leave at least one channel;
- `sparsity.snip_mask` other than its default needs a `sparsity.init` that can be snip;
- `k_prime` fixes `r_c` (derived here) or must agree with it;
- the `search` section must suit the space (grid needs finite domains and at most MAX_GRID
  combinations, counted without enumerating them; cmaes one objective).
"""
from __future__ import annotations

import math
from typing import Any

from lknas.arch import SparsitySpec
from lknas.limits import MAX_GRID
from lknas.space.configs import SearchConfig
from lknas.space.domains import Constant, Domain
from lknas.space.fields import Issues
from lknas.space.grid import grid_length, possible_k_primes, r_c_for_k_prime
from lknas.space.resolve import KEY_NEEDS, Dimension, Template, dimensions, scaled_width

_APPLIES = {
    "stripe_n": "stripe_n only applies to stripe kernels (kernel_type: stripe)",
    "r_c": "r_c only applies to peripheral kernels (kernel_type: peripheral)",
    "m": "m only applies to peripheral kernels (kernel_type: peripheral)",
    "k_prime": "k_prime only applies to peripheral kernels (kernel_type: peripheral)",
    "pos_embed": "pos_embed only applies to peripheral kernels (kernel_type: peripheral)",
    "grid": "grid only applies to peripheral kernels (kernel_type: peripheral)",
    "share_scale": "share_scale only applies to peripheral kernels (kernel_type: peripheral)",
    "reparam": "reparam does not apply to dilated kernels (their parallel branches are fixed); "
               "use kernel_type dense, stripe or peripheral",
    "grn": "grn only applies to convnext and unirep blocks",
    "layer_scale": "layer_scale only applies to convnext and unirep blocks",
    "se": "se only applies to unirep blocks",
    "dw_ratio": "dw_ratio only applies to replk blocks",
}


def _sizes(value: Any) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def _kernel_bounds(dom: Domain) -> tuple[int, int]:
    """(smallest, largest) of the largest kernel of a stage over the kernel domain."""
    vals = dom.values()
    if vals is None:  # an IntRange always has values; guard for safety
        return dom.min(), dom.max()
    tops = [max(_sizes(v)) for v in vals]
    return min(tops), max(tops)


def check_relations(t: Template, issues: Issues) -> None:
    """Add a problem for every cross-key rule the space breaks."""
    _check_applies(t, issues)
    _check_snip_mask(t, issues)
    for i, stage in enumerate(t.stages):
        kernel = t.lookup(i, "kernel")
        if kernel is not None:
            _check_kernel_fit(t, i, kernel, issues)
            _check_k_prime(t, i, kernel, issues)
        _check_channels(t, i, issues)


def _check_applies(t: Template, issues: Issues) -> None:
    for i, stage in enumerate(t.stages):
        for key in stage:
            if key in KEY_NEEDS and not t.activity(i, key)[0]:
                switch = KEY_NEEDS[key][0]
                found = t.lookup(i, switch)
                now = f"{found[0]} is {found[1]}" if found else f"stage {i} uses the default {switch}"
                issues.append((f"stages[{i}].{key}", f"{_APPLIES[key]}; {now}"))
    for key in t.globals:
        users = t.consumers(key)
        if key in KEY_NEEDS and users and not any(t.activity(i, key)[0] for i in users):
            switch = KEY_NEEDS[key][0]
            issues.append((key, f"{_APPLIES[key]}; no stage that inherits it can have such a {switch}"))


def _check_snip_mask(t: Template, issues: Issues) -> None:
    if not t.sparsity or "snip_mask" not in t.sparsity:
        return
    if t.sparsity["snip_mask"].values() == [SparsitySpec.snip_mask]:
        return  # the default changes nothing whatever the init
    init = t.sparsity.get("init")
    inits = init.values() if init is not None else [SparsitySpec.init]
    if inits is not None and "snip" not in inits:
        issues.append(("sparsity.snip_mask", f"snip_mask only applies to SNIP initialization, but sparsity.init "
                                             f"is {init if init is not None else SparsitySpec.init}; set "
                                             f"sparsity.init: snip or remove sparsity.snip_mask"))


def _check_kernel_fit(t: Template, i: int, kernel: tuple[str, Domain], issues: Issues) -> None:
    kname, kdom = kernel
    _, kmax = _kernel_bounds(kdom)
    fixed_kernel = isinstance(kdom, Constant)
    reparam = t.lookup(i, "reparam")
    if reparam and t.activity(i, "reparam")[0] and fixed_kernel and isinstance(reparam[1], Constant):
        r = reparam[1].value
        if r and r >= kmax:
            issues.append((reparam[0], f"reparam {r} must be smaller than the kernel ({kname} is {kdom}); "
                                       f"use 0 (none) or a size below {kmax}"))
    r_c = t.lookup(i, "r_c")
    if r_c and t.activity(i, "r_c")[0]:
        rmax = r_c[1].max()
        if 2 * rmax + 1 > kmax:
            what = f"r_c {rmax}" if isinstance(r_c[1], Constant) else f"the largest r_c ({rmax})"
            issues.append((r_c[0], f"{what} needs a kernel of at least {2 * rmax + 1} (a fine centre of "
                                   f"2*r_c+1), but {kname} is at most {kmax}; use r_c <= {(kmax - 1) // 2}"))
    stripe = t.lookup(i, "stripe_n")
    if stripe and t.activity(i, "stripe_n")[0]:
        nmin = stripe[1].min()
        if nmin >= kmax:
            issues.append((stripe[0], f"stripe_n {nmin} must be smaller than the kernel ({kname} is at most "
                                      f"{kmax}); use an odd stripe_n below {kmax}"))


def _check_k_prime(t: Template, i: int, kernel: tuple[str, Domain], issues: Issues) -> None:
    found = t.lookup(i, "k_prime")
    if found is None or not t.activity(i, "k_prime")[0]:
        return
    path, kp = found[0], found[1].values()[0]
    kname, kdom = kernel
    if not isinstance(kdom, Constant) or isinstance(kdom.value, (list, tuple)):
        issues.append((path, f"k_prime needs a single constant kernel size, but {kname} is {kdom}; "
                             "give r_c instead"))
        return
    k = kdom.value
    m_found = t.lookup(i, "m")
    if m_found and not isinstance(m_found[1], Constant):
        issues.append((path, f"k_prime needs a constant m, but {m_found[0]} is {m_found[1]}"))
        return
    m = m_found[1].values()[0] if m_found else 2
    r_c = t.lookup(i, "r_c")
    options = ", ".join(map(str, possible_k_primes(k, m)))
    if r_c is None:
        derived = r_c_for_k_prime(k, kp, m)
        if derived is None:
            issues.append((path, f"no r_c gives k_prime {kp} for kernel {k} (m={m}); possible k_prime: {options}"))
        else:
            t.stages[i]["r_c"] = Constant(derived)
    elif not isinstance(r_c[1], Constant):
        issues.append((path, f"k_prime fixes r_c; give either k_prime or a searched r_c ({r_c[0]}), not both"))
    elif 2 * r_c[1].value + 1 <= k and grid_length(k, r_c[1].value, m) != kp:
        actual = grid_length(k, r_c[1].value, m)
        issues.append((path, f"k_prime {kp} disagrees with kernel {k}, r_c {r_c[1].value}, m {m} "
                             f"(which give k_prime {actual}); possible k_prime for kernel {k}: {options}"))


def _check_channels(t: Template, i: int, issues: Issues) -> None:
    width = t.lookup(i, "width")
    if width is None:
        return
    mult = t.globals.get("width_multiplier", Constant(1.0))
    smallest = scaled_width(width[1].min(), mult.min())
    if smallest < 1:
        issues.append(("width_multiplier", f"width_multiplier {mult.min():g} leaves stages[{i}] with no channel "
                                           f"(int({width[1].min()} * {mult.min():g}) = 0); use a larger one"))
        return
    partial = t.lookup(i, "partial")
    if partial and round(smallest * partial[1].min()) < 1:
        issues.append((partial[0], f"partial {partial[1].min():g} of {smallest} channels (stages[{i}]) leaves no "
                                   f"channel for the large kernel; use partial >= {1 / smallest:.3g}"))


def grid_problem(dims: list[Dimension]) -> str | None:
    """Why the grid sampler cannot enumerate these dimensions (continuous ones, or more than
    MAX_GRID combinations, counted by multiplying sizes), or None."""
    continuous = [d.name for d in dims if not d.domain.is_finite]
    if continuous:
        return ("the grid sampler needs every searched key to be finite (choice or int); float ranges: "
                f"{', '.join(continuous)}; use choice: [...] for them or another sampler (tpe, random, ...)")
    sizes = [(d.name, d.domain.size()) for d in dims]
    total = math.prod(n for _, n in sizes)
    if total <= MAX_GRID:
        return None
    factors = " x ".join(f"{name} {n}" for name, n in sorted(sizes, key=lambda s: -s[1])[:12])
    more = " x ..." if len(sizes) > 12 else ""
    return (f"the grid sampler would enumerate {total:,} combinations ({factors}{more}), more than the "
            f"{MAX_GRID:,} it may hold in memory; use a sampler that draws (tpe, nsga2, random, qmc) or fix "
            "some keys to single values")


def check_search(t: Template, search: SearchConfig, issues: Issues) -> None:
    """The sampler must suit the space and the objectives."""
    if search.sampler == "grid":
        problem = grid_problem(dimensions(t))
        if problem:
            issues.append(("search.sampler", problem))
    if search.sampler == "cmaes" and len(search.objectives) != 1:
        names = ", ".join(o.name for o in search.objectives)
        issues.append(("search.sampler", f"cmaes optimizes a single objective, but search.objectives has "
                                         f"{len(search.objectives)} ({names}); keep one objective or use "
                                         "nsga2, nsga3 or tpe"))
    if search.scheduler == "moasha" and "accuracy" not in {o.name for o in search.objectives}:
        names = ", ".join(o.name for o in search.objectives)
        issues.append(("search.scheduler", f"moasha stops trials by their accuracy during training, but "
                                           f"search.objectives ({names}) has no accuracy; add accuracy to the "
                                           "objectives or use scheduler fifo"))
