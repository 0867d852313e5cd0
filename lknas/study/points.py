"""The points of a scaling study: per variant, the base, then one dimension at a time.

`{match: kernel}` picks, for each kernel point, the depth (or width) multiplier whose FLOPs come
closest to that kernel point's (bisection on the multiplier, FLOPs counted with fvcore on the
deploy form and cached by architecture hash).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from lknas.arch import ArchConfig
from lknas.errors import Problem
from lknas.study.experiment import Experiment, ExperimentError, _arch, _variant_dict

__all__ = ["Point", "expand", "odd_size", "round_width", "default_counter"]


@dataclass(frozen=True)
class Point:
    """One architecture of a study: `variant`, `dimension` ('base' for the unscaled one), a label
    (`point`), a number to sort by (`value`: multiplier, phi, resolution or mean kernel size)."""

    variant: str
    dimension: str
    point: str
    value: float
    arch: ArchConfig
    resolution: int


def odd_size(x: float) -> int:
    """The odd integer in [x - 1, x + 1) (6 -> 7, 6.9 -> 7, 5.4 -> 5), at least 1."""
    return max(1, int(math.floor(x / 2)) * 2 + 1)


def round_width(w: float, divisor: int = 8) -> int:
    return max(divisor, int(round(w / divisor)) * divisor)


def _with(arch: ArchConfig, *, kernel=None, depth=None, width=None, width_mult: float | None = None) -> dict[str, Any]:
    d = arch.to_dict()
    for i, stage in enumerate(d["stages"]):
        if kernel is not None:
            k = kernel[i]
            stage["kernel"] = list(k) if isinstance(k, tuple) else k
        if depth is not None:
            stage["depth"] = depth[i]
        if width is not None:
            stage["width"] = width[i]
    if width_mult is not None:
        d["stem"]["width"] = round_width(d["stem"]["width"] * width_mult)
    elif width is not None and arch.stem.width == arch.stages[0].width:
        d["stem"]["width"] = width[0]
    return d


def _kernel_mult(arch: ArchConfig, m: float) -> list:
    out = []
    for s in arch.stages:
        sizes = tuple(odd_size(k * m) if m != 1 else k for k in s.kernel.size)
        out.append(sizes if len(sizes) > 1 else sizes[0])
    return out


def _depth_mult(arch: ArchConfig, m: float) -> list[int]:
    return [max(1, int(round(d * m))) for d in arch.depths]


def _width_mult(arch: ArchConfig, m: float) -> list[int]:
    return [w if m == 1 else round_width(w * m) for w in arch.widths]


def _label(values) -> str:
    return "-".join(str(v if not isinstance(v, tuple) else "/".join(map(str, v))) for v in values)


Counter = Callable[[ArchConfig, int], float]


def default_counter(num_classes: int = 2, in_chans: int = 3) -> Counter:
    """FLOPs (effective, deploy form) of an architecture at a resolution, cached by hash."""
    cache: dict[tuple[str, int], float] = {}

    def count(arch: ArchConfig, resolution: int) -> float:
        key = (arch.hash(), resolution)
        if key not in cache:
            from lknas.measure.trial import measure_static
            from lknas.search.objectives import effective_counts

            cache[key] = float(effective_counts(measure_static(arch, resolution, num_classes, in_chans))["flops_effective"])
        return cache[key]

    return count


def expand(exp: Experiment, count: Counter | None = None) -> list[Point]:
    """Every point of the study: per variant, the base first, then each dimension's points in the
    file's order. Points that build the same network at the same resolution as an earlier one are
    left out. Raises ExperimentError if a point does not build."""
    count = count or default_counter()
    issues: list[tuple[str, str]] = []
    res0 = exp.train.resolution
    points: list[Point] = []
    for vname, over in exp.variants.items():
        base = _arch(_variant_dict(exp.base, over), f"variants.{vname}", exp.file, issues)
        if base is None:
            continue
        seen = {(base.hash(), res0)}
        vpoints = [Point(vname, "base", "base", 1.0, base, res0)]

        def add(dim: str, label: str, value: float, d: dict | None, path: str, res: int = res0,
                arch: ArchConfig | None = None) -> None:
            arch = arch or _arch(d, f"{path} (variant {vname})", exp.file, issues)
            if arch is not None and (arch.hash(), res) not in seen:
                seen.add((arch.hash(), res))
                vpoints.append(Point(vname, dim, label, float(value), arch, res))

        kernel_points: list[Point] = []
        for dim, spec in exp.scale.items():
            path = f"scale.{dim}"
            if dim == "kernel":
                if "multipliers" in spec:
                    for i, m in enumerate(spec["multipliers"]):
                        ks = _kernel_mult(base, m)
                        add(dim, f"x{m:g} ({_label(ks)})", m, _with(base, kernel=ks), f"{path}.multipliers[{i}]")
                else:
                    for i, ks in enumerate(spec["explicit"]):
                        mean = sum(max(k) if isinstance(k, tuple) else k for k in ks) / len(ks)
                        add(dim, _label(ks), mean, _with(base, kernel=ks), f"{path}[{i}]")
                kernel_points = [p for p in vpoints if p.dimension == "kernel"]
            elif dim in ("depth", "width"):
                mult = _depth_mult if dim == "depth" else _width_mult
                if "match" in spec:
                    for kp in kernel_points or [p for p in vpoints if p.dimension == "kernel"]:
                        m, arch = _match(base, dim, count(kp.arch, res0), count, res0)
                        values = arch.depths if dim == "depth" else arch.widths
                        add(dim, f"x{m:.2f} ({_label(values)}) ~ k {kp.point}", m, None, path, arch=arch)
                elif "multipliers" in spec:
                    for i, m in enumerate(spec["multipliers"]):
                        values = mult(base, m)
                        kw = {"depth": values} if dim == "depth" else {"width": values, "width_mult": m}
                        add(dim, f"x{m:g} ({_label(values)})", m, _with(base, **kw), f"{path}.multipliers[{i}]")
                else:
                    for i, values in enumerate(spec["explicit"]):
                        ratio = sum(values) / sum(base.depths if dim == "depth" else base.widths)
                        add(dim, _label(values), ratio, _with(base, **{dim: values}), f"{path}[{i}]")
            elif dim == "resolution":
                for r in spec["values"]:
                    add(dim, str(r), r / res0, None, path, res=int(r), arch=base)
            elif dim == "compound":
                for i, phi in enumerate(spec.get("phi", [])):
                    dm, wm, rm, km = (spec[k] ** phi for k in ("depth", "width", "resolution", "kernel"))
                    res = max(16, int(round(res0 * rm / 8)) * 8)
                    d = _with(base, kernel=_kernel_mult(base, km), depth=_depth_mult(base, dm),
                              width=_width_mult(base, wm), width_mult=wm)
                    add(dim, f"phi={phi:g}", phi, d, f"{path}.phi[{i}]", res=res)
        points.extend(vpoints)
    if issues:
        raise ExperimentError([Problem(exp.file, p, m) for p, m in issues])
    return points


def _match(base: ArchConfig, dim: str, target: float, count: Counter, res: int) -> tuple[float, ArchConfig]:
    """The multiplier of `dim` (depth or width) whose FLOPs are closest to `target` (log scale)."""
    def make(m: float) -> ArchConfig:
        if dim == "depth":
            return ArchConfig.from_dict(_with(base, depth=_depth_mult(base, m)))
        return ArchConfig.from_dict(_with(base, width=_width_mult(base, m), width_mult=m))

    best = (math.inf, 1.0, base)
    lo, hi = 1.0, 2.0
    while count(make(hi), res) < target and hi < 64:  # bracket the target
        lo, hi = hi, hi * 2
    for _ in range(14):
        mid = (lo + hi) / 2
        flops = count(make(mid), res)
        if flops < target:
            lo = mid
        else:
            hi = mid
    for m in (lo, hi):
        arch = make(m)
        err = abs(math.log(count(arch, res) / target))
        if err < best[0]:
            best = (err, m, arch)
    return best[1], best[2]
