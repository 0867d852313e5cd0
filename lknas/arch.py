"""`ArchConfig`: the one frozen, fully resolved description of an architecture.

Every layer of lknas speaks this object: the search space samples it, the builder turns it into a
model, the search stores it and the exporter registers it with timm. It round-trips through plain
dicts, YAML and JSON without loss and has a stable short hash.

Fields that do not apply (e.g. `r_c` of a dense kernel) are `None`, so two configs that build the
same network compare and hash equal.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import yaml

KERNEL_TYPES = ("dense", "stripe", "peripheral", "dilated")
GRID_ORDERS = ("fine_centre", "coarse_centre")  # peripheral: PeLK's grid; the same grid reversed (its ablation)
# peripheral: how a weight shared by s taps is scaled by 1/sqrt(s): not at all (PeLK), its init,
# its learning rate (a parametrization w = v / sqrt(s): AdamW moves each tap by ~lr / sqrt(s)), or both
SHARE_SCALES = ("none", "init", "lr", "both")
BLOCK_TYPES = ("replk", "convnext", "unirep")
STEM_TYPES = ("patch", "replk", "unirep")
DOWNSAMPLE_TYPES = ("none", "patch", "conv3", "replk")
HEAD_NORMS = ("ln", "bn", "none")
SPARSITY_GROWTH = ("random", "gradient")
SPARSITY_INIT = ("uniform", "erk", "snip")
SPARSITY_TARGETS = ("large_kernels", "all")
# init 'snip': 'random' (SLaK) takes only each layer's density from the SNIP scores and draws a
# random mask at it; 'topk' keeps the globally most sensitive weights themselves
SPARSITY_SNIP_MASKS = ("random", "topk")
# how much each stem and downsample layer shrinks the map (input -> stage 1 is stride 4)
STEM_REDUCTION = {"patch": 4, "replk": 4, "unirep": 4}
DOWNSAMPLE_REDUCTION = {"patch": 2, "conv3": 2, "replk": 2, "none": 1}


def stage_map_sizes(resolution: int, stem: str, downsamples: tuple[str, ...] | list[str]) -> tuple[int, ...]:
    """Side of each stage's feature map for a square input (stride-s layers round up, as a
    padded stride-s conv or a patchify of a divisible input does)."""
    sizes, side = [], -(-resolution // STEM_REDUCTION[stem])
    for down in downsamples:
        side = -(-side // DOWNSAMPLE_REDUCTION[down])
        sizes.append(side)
    return tuple(sizes)


def applied_kernel(k: int, side: int) -> int:
    """The part of a k x k 'same' kernel that can meet a side x side map: taps farther than
    side - 1 from the centre only ever meet zero padding (`lknas.ops.dwconv2d` crops them)."""
    return min(k, 2 * side - 1)


@dataclass(frozen=True)
class KernelSpec:
    """The token mixer of a stage: kernel size(s), kernel type and their options.

    `size` is a tuple cycled over the stage's blocks (UniRepLKNet alternates 13 and 3); most stages
    have one size. `reparam` is the parallel small kernel (0 = none). `partial` is the fraction of
    channels that goes through the large kernel; the rest is identity (PeLK's 3/8).
    """

    size: tuple[int, ...]
    type: str = "dense"
    reparam: int | None = 0
    partial: float = 1.0
    stripe_n: int | None = None
    r_c: int | None = None
    m: int | None = None
    pos_embed: bool | None = None
    grid: str | None = None  # peripheral: "coarse_centre" (PeLK's reversed grid); None = fine centre
    share_scale: str | None = None  # peripheral: "init", "lr" or "both"; None = none (see lknas.ops.peripheral)

    @property
    def max_size(self) -> int:
        return max(self.size)

    def size_of_block(self, index: int) -> int:
        return self.size[index % len(self.size)]


@dataclass(frozen=True)
class StageSpec:
    """One stage: `depth` blocks of type `block` at `width` channels after `downsample`."""

    depth: int
    width: int
    kernel: KernelSpec
    block: str = "convnext"
    mlp_ratio: float = 4.0
    downsample: str = "patch"
    grn: bool | None = None
    layer_scale: float | None = None
    se: bool | None = None
    dw_ratio: float | None = None
    shortcut: bool | None = None  # False: the large-kernel blocks lose their identity shortcut


@dataclass(frozen=True)
class StemSpec:
    type: str = "patch"
    width: int = 96


@dataclass(frozen=True)
class HeadSpec:
    norm: str = "ln"
    dropout: float = 0.0


@dataclass(frozen=True)
class SparsitySpec:
    """SLaK-style dynamic sparsity; carried here, applied by the trainer."""

    density: float = 0.6
    prune_rate: float = 0.3
    update_interval: int = 100
    growth: str = "random"
    init: str = "erk"
    targets: str = "large_kernels"
    snip_mask: str = "random"


@dataclass(frozen=True)
class ArchConfig:
    """A complete macro-architecture: stem, stages, head, regularization and sparsity."""

    stem: StemSpec
    stages: tuple[StageSpec, ...]
    head: HeadSpec = field(default_factory=HeadSpec)
    drop_path: float = 0.0
    sparsity: SparsitySpec | None = None

    # ----------------------------------------------------------------- derived views
    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(s.depth for s in self.stages)

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(s.width for s in self.stages)

    @property
    def kernel_sizes(self) -> tuple[int, ...]:
        """The largest kernel of each stage."""
        return tuple(s.kernel.max_size for s in self.stages)

    @property
    def kernel_types(self) -> tuple[str, ...]:
        return tuple(s.kernel.type for s in self.stages)

    def map_sizes(self, resolution: int) -> tuple[int, ...]:
        """Side of each stage's feature map at a square input of `resolution`."""
        return stage_map_sizes(resolution, self.stem.type, [s.downsample for s in self.stages])

    def applied_kernel_sizes(self, resolution: int) -> tuple[int, ...]:
        """The largest kernel of each stage as the network applies it at `resolution` (cropped
        to 2 x map - 1): two architectures that differ only beyond it compute the same function."""
        return tuple(applied_kernel(s.kernel.max_size, side)
                     for s, side in zip(self.stages, self.map_sizes(resolution)))

    def summary(self) -> str:
        """One line for logs, tables and plot hovers."""
        ktypes = sorted(set(self.kernel_types))
        text = (
            f"{'/'.join(ktypes)} k={'-'.join(map(str, self.kernel_sizes))} "
            f"d={'-'.join(map(str, self.depths))} w={'-'.join(map(str, self.widths))}"
        )
        if self.sparsity is not None:
            text += f" density={self.sparsity.density:g}"
        if any(s.shortcut is False for s in self.stages):
            text += " no-shortcut"
        return text

    # ----------------------------------------------------------------- serialization
    def to_dict(self) -> dict[str, Any]:
        """A plain dict in the search-space file format with every value fixed.

        Stage keys are flat (`kernel`, `kernel_type`, `r_c`, ...) exactly as in a space file, and
        fields that do not apply are left out, so the YAML of an `ArchConfig` is itself a valid,
        domain-free space file. Inverse of `from_dict`.
        """
        stages = []
        for s in self.stages:
            k = s.kernel
            entry: dict[str, Any] = {
                "depth": s.depth,
                "width": s.width,
                "kernel": k.size[0] if len(k.size) == 1 else list(k.size),
                "kernel_type": k.type,
                "reparam": k.reparam,
                "partial": k.partial,
                "stripe_n": k.stripe_n,
                "r_c": k.r_c,
                "m": k.m,
                "pos_embed": k.pos_embed,
                "grid": k.grid,  # None (left out) at their defaults: hashes of older configs stay
                "share_scale": k.share_scale,
                "block": s.block,
                "mlp_ratio": s.mlp_ratio,
                "downsample": s.downsample,
                "grn": s.grn,
                "layer_scale": s.layer_scale if s.layer_scale is not None or s.block == "replk" else 0.0,
                "se": s.se,
                "dw_ratio": s.dw_ratio,
                "shortcut": False if s.shortcut is False else None,  # left out at its default: hashes stay
            }
            stages.append({key: v for key, v in entry.items() if v is not None})
        return {
            "stem": dataclasses.asdict(self.stem),
            "stages": stages,
            "head": dataclasses.asdict(self.head),
            "drop_path": self.drop_path,
            "sparsity": None if self.sparsity is None else _sparsity_dict(self.sparsity),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchConfig:
        """Rebuild from `to_dict` output (trusted input). Hand-written files go through
        `lknas.load_arch`, which validates them and reports errors with key paths."""
        stages = []
        for s in data["stages"]:
            size = s["kernel"]
            kernel = KernelSpec(
                size=tuple(size) if isinstance(size, (list, tuple)) else (size,),
                type=s["kernel_type"],
                reparam=s.get("reparam"),
                partial=s.get("partial", 1.0),
                stripe_n=s.get("stripe_n"),
                r_c=s.get("r_c"),
                m=s.get("m"),
                pos_embed=s.get("pos_embed"),
                grid=s.get("grid"),
                share_scale=s.get("share_scale"),
            )
            stages.append(
                StageSpec(
                    depth=s["depth"],
                    width=s["width"],
                    kernel=kernel,
                    block=s["block"],
                    mlp_ratio=s["mlp_ratio"],
                    downsample=s["downsample"],
                    grn=s.get("grn"),
                    layer_scale=s.get("layer_scale") or None,
                    se=s.get("se"),
                    dw_ratio=s.get("dw_ratio"),
                    shortcut=False if s.get("shortcut") is False else None,
                )
            )
        sparsity = data.get("sparsity")
        return cls(
            stem=StemSpec(**data["stem"]),
            stages=tuple(stages),
            head=HeadSpec(**data.get("head", {})),
            drop_path=data.get("drop_path", 0.0),
            sparsity=SparsitySpec(**sparsity) if sparsity else None,
        )

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> ArchConfig:
        return cls.from_dict(yaml.safe_load(text))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ArchConfig:
        return cls.from_dict(json.loads(text))

    def hash(self, length: int = 10) -> str:
        """Stable short content hash, used to name trials and files."""
        digest = hashlib.sha256(self.to_json().encode()).hexdigest()
        return digest[:length]

    def replace(self, **changes: Any) -> ArchConfig:
        return dataclasses.replace(self, **changes)


def _sparsity_dict(spec: SparsitySpec) -> dict[str, Any]:
    """The spec's fields, without `snip_mask` at its default: architectures saved before the key
    existed (results, checkpoints, resumable searches) keep the same YAML text."""
    out = dataclasses.asdict(spec)
    if out["snip_mask"] == SparsitySpec.snip_mask:
        del out["snip_mask"]
    return out
