"""The largest model of a space against a memory budget, before anything is built.

`largest_model(template, resolution, batch_size)` prices the most expensive network the space
can produce with `lknas.models.estimate`: every numeric key at its largest value (depth, width x
width_multiplier, kernel in every block unless the stage fixes its kernel list, mlp_ratio,
dw_ratio, partial, reparam and stripe_n below the kernel, the finest peripheral grid) and, stage by stage, the most expensive block type, kernel type and
downsample layer, with feature maps as large as any downsample choice leaves them. Stage costs
add up, so this is an upper bound on every sampled architecture, found in time linear in the
number of stages (never by enumerating the space).

`check_budget` adds a problem when that bound exceeds `$LKNAS_MAX_MODEL_GB` (default 64 GB;
`lknas.limits.max_model_bytes`); `check_arch_budget` refuses one architecture the same way
(`lknas train`, proxy training with overridden resolution or batch size).
"""
from __future__ import annotations

import itertools
from typing import Any

from lknas.arch import ArchConfig, KernelSpec, StageSpec
from lknas.errors import LknasError
from lknas.limits import MODEL_GB_ENV, BudgetSettingError, max_model_bytes
from lknas.models.estimate import ACTIVATION_BYTES, Estimate, estimate, head_params, stage_cost, stem_cost
from lknas.space.domains import Constant, Domain
from lknas.space.fields import Issues
from lknas.space.resolve import BLOCK_DOWNSAMPLE, BLOCK_STEM, Template, scaled_width

__all__ = ["largest_model", "check_budget", "check_arch_budget", "DEFAULT_NUM_CLASSES"]

DEFAULT_NUM_CLASSES = 1000  # classes priced when the space does not fix train.num_classes
IN_CHANS = 3  # the most any data set has


def _values(dom: Domain | None) -> list[Any]:
    if dom is None:
        return []
    vals = dom.values()
    return [dom.min(), dom.max()] if vals is None else vals


def _top(dom: Domain | None, default: Any) -> Any:
    """The largest value of a numeric or boolean domain (null ignored), or `default`."""
    vals = [v for v in _values(dom) if v is not None]
    return max(vals) if vals else default


def _largest_kernel(dom: Domain | None) -> int:
    return max((max(v) if isinstance(v, (list, tuple)) else v for v in _values(dom)), default=1)


def _stage_options(t: Template, i: int, in_chs: int, side: int, plain: bool) -> tuple[int, int, int, int, int]:
    """Stage i at its largest: (params, activation elements per sample, per step, each maximized
    over the stage's block, kernel type and downsample choices; the largest output side; width)."""
    def dom(key: str) -> Domain | None:
        found = t.lookup(i, key)
        return found[1] if found else None

    kdom = dom("kernel")
    k = _largest_kernel(kdom)
    fixed = kdom.value if isinstance(kdom, Constant) else k  # a fixed list keeps its cycle
    sizes = tuple(fixed) if isinstance(fixed, (list, tuple)) else (fixed,)
    width = scaled_width(_top(dom("width"), 1), _top(t.globals.get("width_multiplier"), 1.0))
    reparam = max([r for r in _values(dom("reparam")) if r is not None and r < k], default=0)
    stripes = [s for s in (_values(dom("stripe_n")) or [5]) if s < k]
    stripe_n = max(stripes) if stripes else max(1, k - 2)  # as `resolve` fits it to the kernel
    r_c = min(_top(dom("r_c"), 2), (k - 1) // 2)
    m_vals = _values(dom("m"))
    m = min(m_vals) if m_vals else 2
    layer_scale = _top(dom("layer_scale"), 1e-6)
    best = (0, 0, 0)
    sides = []
    for block, ktype in itertools.product(t.switch_values(i, "block"), t.switch_values(i, "kernel_type")):
        kernel = KernelSpec(size=sizes, type=ktype, reparam=reparam if ktype != "dilated" else None,
                            partial=_top(dom("partial"), 1.0), stripe_n=stripe_n, r_c=r_c, m=m,
                            pos_embed=_top(dom("pos_embed"), False))
        downsamples = _values(dom("downsample")) or ["none" if i == 0 else BLOCK_DOWNSAMPLE[block]]
        for down in downsamples:
            spec = StageSpec(depth=_top(dom("depth"), 1), width=width, kernel=kernel, block=block,
                             mlp_ratio=_top(dom("mlp_ratio"), 4.0), downsample=down,
                             grn=_top(dom("grn"), block == "unirep"), layer_scale=layer_scale,
                             se=_top(dom("se"), True), dw_ratio=_top(dom("dw_ratio"), 1.0))
            params, acts, fixed, out = stage_cost(in_chs, spec, side, plain)
            best = tuple(max(a, b) for a, b in zip(best, (params, acts, fixed)))  # type: ignore[assignment]
            sides.append(out)
    return (*best, max(sides), width)  # type: ignore[return-value]


def largest_model(t: Template, resolution: int, batch_size: int, num_classes: int | None = None) -> Estimate:
    """An upper bound on the parameters and training memory of any architecture of `t`."""
    plain = t.sparsity is None
    first_blocks = t.switch_values(0, "block")
    stem_types = _values(t.stem.get("type")) or [BLOCK_STEM[b] for b in first_blocks]
    stage0 = t.lookup(0, "width")
    stem_width = _top(t.stem.get("width"), scaled_width(_top(stage0[1] if stage0 else None, 1),
                                                        _top(t.globals.get("width_multiplier"), 1.0)))
    stems = [stem_cost(kind, IN_CHANS, stem_width, resolution) for kind in stem_types]
    params = max(s[0] for s in stems)
    acts = max(s[1] for s in stems)
    side = max(s[2] for s in stems)
    fixed, prev = 0, stem_width
    for i in range(len(t.stages)):
        p, a, f, side, prev = _stage_options(t, i, prev, side, plain)
        params, acts, fixed = params + p, acts + a, fixed + f
    norms = _values(t.head.get("norm")) or ["ln", "bn"]
    params += max(head_params(n, prev, num_classes or DEFAULT_NUM_CLASSES) for n in norms)
    acts += 2 * prev * side ** 2
    return Estimate(params, (acts * batch_size + fixed) * ACTIVATION_BYTES, resolution, batch_size)


def _over(est: Estimate, what: str) -> str | None:
    """The problem text when `est` exceeds the budget, else None."""
    try:
        limit = max_model_bytes()
    except BudgetSettingError as err:
        return str(err)
    if est.total_bytes <= limit:
        return None
    return (f"{what} needs about {est.describe()} to train, over the {limit / 1e9:g} GB budget; use smaller "
            f"depth, width, mlp_ratio or kernel (or train.batch_size / resolution), or raise the budget: "
            f"{MODEL_GB_ENV}={max(1, int(est.total_bytes / 1e9) + 1)} (or 'off')")


def check_budget(t: Template, resolution: int, batch_size: int, num_classes: int | None, issues: Issues) -> None:
    """Add a problem at `stages` when the space's largest model exceeds the memory budget."""
    message = _over(largest_model(t, resolution, batch_size, num_classes), "the largest model of this space")
    if message:
        issues.append(("stages", message))


def check_arch_budget(arch: ArchConfig, resolution: int, batch_size: int, *, num_classes: int = 1000,
                      in_chans: int = 3) -> Estimate:
    """The architecture's estimate; LknasError when it exceeds the memory budget."""
    est = estimate(arch, resolution, batch_size, num_classes=num_classes, in_chans=in_chans)
    message = _over(est, f"architecture {arch.summary()}")
    if message:
        raise LknasError(message)
    return est
