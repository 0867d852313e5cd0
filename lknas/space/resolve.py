"""From a parsed space (`Template`) to a concrete `ArchConfig`, one domain at a time.

Sampling and Optuna's define-by-run share one walk over the space; only the `pick` function
differs. The walk asks for values in a fixed order and skips keys that the values picked so far
switch off (e.g. `r_c` of a stage whose kernel_type came out dense):

1. the switches `block` and `kernel_type`: global ones (file order), then each stage's;
2. the other global keys, in file order (a global key is asked only if some stage that inherits
   it uses it; `width_multiplier` always);
3. `stem`; 4. each stage, keys in schema order; 5. `head`; 6. `sparsity` (`enabled` first);
7. `drop_path`.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from lknas.arch import ArchConfig, HeadSpec, KernelSpec, SparsitySpec, StageSpec, StemSpec
from lknas.space.domains import Constant, Domain
from lknas.space.stage_fields import STAGE_KEYS  # the schema's list, in its order

SWITCHES = ("block", "kernel_type")
SPARSITY_KEYS = tuple(f.name for f in fields(SparsitySpec))  # the spec is the one list

DEFAULT_BLOCK = "convnext"
DEFAULT_KERNEL_TYPE = "dense"
BLOCK_DOWNSAMPLE = {"convnext": "patch", "unirep": "conv3", "replk": "replk"}
BLOCK_STEM = {"convnext": "patch", "unirep": "unirep", "replk": "replk"}
# key -> (which switch decides, the values that switch it on)
KEY_NEEDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "stripe_n": ("kernel_type", ("stripe",)),
    "r_c": ("kernel_type", ("peripheral",)),
    "m": ("kernel_type", ("peripheral",)),
    "k_prime": ("kernel_type", ("peripheral",)),
    "pos_embed": ("kernel_type", ("peripheral",)),
    "grid": ("kernel_type", ("peripheral",)),
    "share_scale": ("kernel_type", ("peripheral",)),
    "reparam": ("kernel_type", ("dense", "stripe", "peripheral")),
    "grn": ("block", ("convnext", "unirep")),
    "layer_scale": ("block", ("convnext", "unirep")),
    "se": ("block", ("unirep",)),
    "dw_ratio": ("block", ("replk",)),
}
SPARSITY_DEFAULTS = SparsitySpec()

Pick = Callable[[str, Domain], Any]


def key_active(key: str, block: str, kernel_type: str) -> bool:
    """Whether `key` means anything for a stage with this block and kernel type."""
    if key not in KEY_NEEDS:
        return True
    switch, on = KEY_NEEDS[key]
    return (block if switch == "block" else kernel_type) in on


@dataclass
class Template:
    """A validated space: each key mapped to its domain (constants included)."""

    globals: dict[str, Domain] = field(default_factory=dict)  # stage defaults + width_multiplier
    stem: dict[str, Domain] = field(default_factory=dict)
    stages: list[dict[str, Domain]] = field(default_factory=list)
    head: dict[str, Domain] = field(default_factory=dict)
    sparsity: dict[str, Domain] | None = None  # None: off; may hold a domain under "enabled"
    drop_path: Domain = field(default_factory=lambda: Constant(0.0))
    train: dict[str, Domain] = field(default_factory=dict)  # searched train keys (lr, weight_decay)

    def lookup(self, i: int, key: str) -> tuple[str, Domain] | None:
        """The (name, domain) stage `i` uses for `key`: its own, else the global one, else None."""
        if key in self.stages[i]:
            return f"stages[{i}].{key}", self.stages[i][key]
        if key in self.globals:
            return key, self.globals[key]
        return None

    def switch_values(self, i: int, switch: str) -> list[str]:
        found = self.lookup(i, switch)
        if found is None:
            return [DEFAULT_BLOCK if switch == "block" else DEFAULT_KERNEL_TYPE]
        return list(found[1].values() or [])

    def activity(self, i: int, key: str) -> tuple[bool, bool]:
        """(can be active, always active) of `key` on stage `i` over every switch value."""
        states = [key_active(key, b, t) for b, t in itertools.product(
            self.switch_values(i, "block"), self.switch_values(i, "kernel_type"))]
        return any(states), all(states)

    def consumers(self, key: str) -> list[int]:
        """Stages that inherit the global `key`."""
        return [i for i, st in enumerate(self.stages) if key not in st]


@dataclass(frozen=True)
class Dimension:
    """A searched key: its parameter name (a key path), its domain and whether it is conditional."""

    name: str
    domain: Domain
    conditional: bool = False

    def __str__(self) -> str:
        return f"{self.name}: {self.domain}" + (" (conditional)" if self.conditional else "")


def dimensions(t: Template) -> list[Dimension]:
    """Every non-constant domain, in asking order, with its conditional flag."""
    out: list[Dimension] = []

    def add(name: str, dom: Domain, conditional: bool) -> None:
        if not isinstance(dom, Constant):
            out.append(Dimension(name, dom, conditional))

    for key in SWITCHES:
        if key in t.globals:
            add(key, t.globals[key], False)
    for i, st in enumerate(t.stages):
        for key in SWITCHES:
            if key in st:
                add(f"stages[{i}].{key}", st[key], False)
    for key, dom in t.globals.items():
        if key in SWITCHES:
            continue
        states = [t.activity(i, key) for i in t.consumers(key)]
        if key == "width_multiplier" or any(s[1] for s in states):
            add(key, dom, False)
        elif any(s[0] for s in states):
            add(key, dom, True)
    for key, dom in t.stem.items():
        add(f"stem.{key}", dom, False)
    for i, st in enumerate(t.stages):
        for key in STAGE_KEYS:
            if key in st and key not in SWITCHES:
                can, always = t.activity(i, key)
                if can:
                    add(f"stages[{i}].{key}", st[key], not always)
    for key, dom in t.head.items():
        add(f"head.{key}", dom, False)
    if t.sparsity is not None:
        enabled = t.sparsity.get("enabled", Constant(True))
        add("sparsity.enabled", enabled, False)
        for key in SPARSITY_KEYS:
            if key in t.sparsity:
                add(f"sparsity.{key}", t.sparsity[key], not isinstance(enabled, Constant))
    add("drop_path", t.drop_path, False)
    for key, dom in t.train.items():
        add(f"train.{key}", dom, False)
    return out


class _Walk:
    """Memoized picks: a constant is returned as is, a domain is asked once per name."""

    def __init__(self, pick: Pick):
        self.pick = pick
        self.values: dict[str, Any] = {}

    def get(self, name: str, dom: Domain) -> Any:
        if isinstance(dom, Constant):
            return dom.value
        if name not in self.values:
            self.values[name] = self.pick(name, dom)
        return self.values[name]


_MISSING = object()


def resolve(t: Template, pick: Pick, normalize: Callable[[str, Any], Any]) -> ArchConfig:
    """Walk the space, asking `pick(name, domain)` for each active domain; build the ArchConfig.

    `normalize(key, value)` turns a picked value into the key's canonical form (e.g. float).
    """
    walk = _Walk(pick)

    def val(i: int, key: str, default: Any = _MISSING) -> Any:
        found = t.lookup(i, key)
        if found is None:
            return default
        return normalize(key, walk.get(*found))

    for key in SWITCHES:
        if key in t.globals:
            walk.get(key, t.globals[key])
    for i, st in enumerate(t.stages):
        for key in SWITCHES:
            if key in st:
                walk.get(f"stages[{i}].{key}", st[key])
    blocks = [val(i, "block", DEFAULT_BLOCK) for i in range(len(t.stages))]
    ktypes = [val(i, "kernel_type", DEFAULT_KERNEL_TYPE) for i in range(len(t.stages))]
    for key, dom in t.globals.items():
        if key == "width_multiplier" or any(key_active(key, blocks[i], ktypes[i]) for i in t.consumers(key)):
            walk.get(key, dom)
    stem = {key: normalize(key, walk.get(f"stem.{key}", dom)) for key, dom in t.stem.items()}
    multiplier = normalize("width_multiplier", walk.get("width_multiplier", t.globals.get(
        "width_multiplier", Constant(1.0))))
    for i, st in enumerate(t.stages):
        for key in STAGE_KEYS:
            if key in st and key not in SWITCHES and key_active(key, blocks[i], ktypes[i]):
                walk.get(f"stages[{i}].{key}", st[key])
    stages = tuple(_stage(i, blocks[i], ktypes[i], multiplier, val) for i in range(len(t.stages)))
    head = {key: normalize(key, walk.get(f"head.{key}", dom)) for key, dom in t.head.items()}
    sparsity = None
    if t.sparsity is not None and walk.get("sparsity.enabled", t.sparsity.get("enabled", Constant(True))):
        sparsity = SparsitySpec(**{key: normalize(key, walk.get(f"sparsity.{key}", t.sparsity[key]))
                                   for key in SPARSITY_KEYS if key in t.sparsity})
    drop_path = normalize("drop_path", walk.get("drop_path", t.drop_path))
    return ArchConfig(
        stem=StemSpec(type=stem.get("type", BLOCK_STEM[blocks[0]]), width=stem.get("width", stages[0].width)),
        stages=stages,
        head=HeadSpec(norm=head.get("norm", "bn" if blocks[-1] == "replk" else "ln"),
                      dropout=head.get("dropout", 0.0)),
        drop_path=drop_path,
        sparsity=sparsity,
    )


def scaled_width(width: int, multiplier: float) -> int:
    """int(width * multiplier), truncating as SLaK does (96 * 1.3 -> 124), robust to float error."""
    return int(width * multiplier + 1e-9)


def _stage(i: int, block: str, ktype: str, multiplier: float, val: Callable[..., Any]) -> StageSpec:
    kernel = val(i, "kernel")
    sizes = tuple(kernel) if isinstance(kernel, (list, tuple)) else (kernel,)
    kmax = max(sizes)
    reparam = None
    if ktype != "dilated":
        reparam = val(i, "reparam", 0)
        reparam = 0 if reparam >= kmax else reparam
    stripe_n = r_c = m = pos_embed = grid = share_scale = None
    if ktype == "stripe":
        stripe_n = val(i, "stripe_n", 5)
        stripe_n = stripe_n if stripe_n < kmax else max(1, kmax - 2)
    if ktype == "peripheral":
        r_c = min(val(i, "r_c", 2), (kmax - 1) // 2)
        m = val(i, "m", 2)
        pos_embed = val(i, "pos_embed", False)
        grid = val(i, "grid", "fine_centre")
        grid = None if grid == "fine_centre" else grid  # defaults are None: configs hash as before
        share_scale = val(i, "share_scale", "none")
        share_scale = None if share_scale == "none" else share_scale
    spec = KernelSpec(size=sizes, type=ktype, reparam=reparam, partial=val(i, "partial", 1.0),
                      stripe_n=stripe_n, r_c=r_c, m=m, pos_embed=pos_embed, grid=grid, share_scale=share_scale)
    grn = layer_scale = se = dw_ratio = None
    if block in ("convnext", "unirep"):
        grn = val(i, "grn", block == "unirep")
        layer_scale = val(i, "layer_scale", 1e-6) or None
    if block == "unirep":
        se = val(i, "se", True)
    if block == "replk":
        dw_ratio = val(i, "dw_ratio", 1.0)
    return StageSpec(
        depth=val(i, "depth"),
        width=scaled_width(val(i, "width"), multiplier),
        kernel=spec,
        block=block,
        mlp_ratio=val(i, "mlp_ratio", 4.0),
        downsample=val(i, "downsample", "none" if i == 0 else BLOCK_DOWNSAMPLE[block]),
        grn=grn,
        layer_scale=layer_scale,
        se=se,
        dw_ratio=dw_ratio,
        shortcut=None if val(i, "shortcut", True) else False,
    )
