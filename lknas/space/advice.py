"""Warnings about a valid space whose choices do not do what they seem to at its proxy resolution.

- Kernel choices that compute the same function: a stage whose map is s x s applies at most a
  (2s - 1) x (2s - 1) kernel (farther taps only meet padding, and `dwconv2d` crops them), so at
  64 px a 31 and a 51 on a 16 x 16 map are one network sampled twice. Map sides are taken as
  large as any stem/downsample choice leaves them, so a warning means the choices are equivalent
  whatever else is sampled.
- A `max_params` no architecture of the space can reach never binds.

`lknas validate` and `lknas search` print them; they never stop a run.
"""
from __future__ import annotations

from collections import defaultdict

from lknas.arch import DOWNSAMPLE_REDUCTION, STEM_REDUCTION, applied_kernel
from lknas.errors import Problem
from lknas.space.resolve import BLOCK_DOWNSAMPLE, BLOCK_STEM, Template

__all__ = ["space_warnings", "largest_map_sides"]


def _values(template: Template, i: int, key: str, default: list[str]) -> list:
    found = template.lookup(i, key)
    return list(found[1].values() or default) if found else default


def largest_map_sides(template: Template, resolution: int) -> list[int]:
    """Each stage's largest possible map side at a square input of `resolution`."""
    stems = template.stem.get("type")
    stem_types = list(stems.values() or []) if stems is not None else [
        BLOCK_STEM[b] for b in template.switch_values(0, "block")]
    side = -(-resolution // min(STEM_REDUCTION[s] for s in stem_types))
    sides = []
    for i in range(len(template.stages)):
        default = ["none"] if i == 0 else [BLOCK_DOWNSAMPLE[b] for b in template.switch_values(i, "block")]
        downs = _values(template, i, "downsample", default)
        side = -(-side // min(DOWNSAMPLE_REDUCTION[d] for d in downs))
        sides.append(side)
    return sides


def _kernel_warnings(template: Template, resolution: int, file: str) -> list[Problem]:
    out = []
    for i, side in enumerate(largest_map_sides(template, resolution)):
        found = template.lookup(i, "kernel")
        if found is None or found[1].values() is None:
            continue
        name, dom = found
        groups: dict[tuple, list] = defaultdict(list)
        for value in dom.values():
            sizes = tuple(value) if isinstance(value, (list, tuple)) else (value,)
            groups[tuple(applied_kernel(k, side) for k in sizes)].append(value)
        for applied, values in groups.items():
            if len(values) > 1:
                shown = " and ".join(str(v) for v in values)
                out.append(Problem(file, name, (
                    f"{shown} are the same kernel at {resolution} px: stage {i}'s map is at most {side}x{side}, "
                    f"which applies at most {2 * side - 1}x{2 * side - 1} (here {'-'.join(map(str, applied))}); "
                    f"they compute the same function but count different params and FLOPs. Keep one, or raise "
                    f"train.resolution")))
    return out


def _constraint_warnings(template: Template, space, file: str) -> list[Problem]:
    limit = space.constraints.max_params
    if limit is None:
        return []
    from lknas.space.budget import largest_model

    largest = largest_model(template, space.constraints.resolution, 1, space.train.num_classes).params
    if largest <= limit:
        return [Problem(file, "constraints.max_params", (
            f"{limit:,} is above the largest architecture of the space ({largest:,} params at most): it never "
            f"binds; lower it, or leave it out"))]
    return []


def space_warnings(space) -> list[Problem]:
    """What looks wrong in a valid `SearchSpace` (see the module docstring)."""
    return (_kernel_warnings(space.template, space.train.resolution, space.file)
            + _constraint_warnings(space.template, space, space.file))
