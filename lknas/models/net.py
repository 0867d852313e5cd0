"""`LKNet`: one generic large-kernel ConvNet over per-stage depth, width, kernel and block type,
with timm's model API (forward_features / forward_head / reset_classifier / pretrained_cfg)."""
from __future__ import annotations

import functools
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import SelectAdaptivePool2d
from torch import nn

from lknas.arch import ArchConfig, StageSpec
from lknas.models.blocks import ConvFFN, ConvNeXtBlock, RepLKBlock, UniRepLKBlock
from lknas.models.stems import DOWNSAMPLE_REDUCTION, STEM_REDUCTION, make_downsample, make_stem
from lknas.ops.large_kernel import n_mixed_channels
from lknas.ops.layers import LayerNorm2d

__all__ = ["LKNet", "LKStage", "LKHead", "make_pretrained_cfg"]


class LKStage(nn.Module):
    """downsample, then `depth` blocks (for `replk`: depth x (RepLKBlock, ConvFFN)).

    A peripheral kernel with `pos_embed` gets one (C_mixed, K, K) embedding per stage (K = the
    stage's largest kernel), registered here as `pos_embed` and shared by all blocks.
    """

    def __init__(self, in_chs: int, spec: StageSpec, drop_paths: list[float], plain_dense: bool = False):
        super().__init__()
        self.downsample = make_downsample(spec.downsample, in_chs, spec.width)
        kernel, dim = spec.kernel, spec.width
        lk_chs = int(dim * (spec.dw_ratio or 1.0)) if spec.block == "replk" else dim
        self.pos_embed: nn.Parameter | None = None
        if kernel.type == "peripheral" and kernel.pos_embed:
            n = n_mixed_channels(lk_chs, kernel.partial)
            self.pos_embed = nn.Parameter(torch.zeros(n, kernel.max_size, kernel.max_size))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        ls, shortcut = spec.layer_scale, spec.shortcut is not False
        blocks: list[nn.Module] = []
        for i in range(spec.depth):
            k, dp = kernel.size_of_block(i), drop_paths[i]
            if spec.block == "replk":
                blocks.append(RepLKBlock(dim, kernel, k, spec.dw_ratio or 1.0, dp, self.pos_embed, shortcut))
                blocks.append(ConvFFN(dim, spec.mlp_ratio, dp))
            elif spec.block == "convnext":
                blocks.append(
                    ConvNeXtBlock(dim, kernel, k, spec.mlp_ratio, ls, bool(spec.grn), dp, self.pos_embed, plain_dense,
                                  shortcut)
                )
            elif spec.block == "unirep":
                grn = True if spec.grn is None else spec.grn
                se = True if spec.se is None else spec.se
                blocks.append(UniRepLKBlock(dim, kernel, k, spec.mlp_ratio, ls, grn, se, dp, self.pos_embed, shortcut))
            else:
                raise ValueError(f"unknown block type {spec.block!r}")
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))

    def fuse_(self) -> None:
        """Drop the positional embedding once no block uses it (deploy form: folded into biases)."""
        if self.pos_embed is not None and not any(
            getattr(m, "pos_embed", None) is not None for m in self.blocks.modules()
        ):
            self.pos_embed = None


class LKHead(nn.Module):
    """norm `ln`: pool, LayerNorm, dropout, fc (ConvNeXt); `bn`: BatchNorm2d on the map, pool,
    dropout, fc (RepLKNet); `none`: pool, dropout, fc. Without pooling (`pool_type=''`) the fc is
    a 1x1 conv."""

    def __init__(self, in_features: int, num_classes: int, norm: str = "ln", pool_type: str = "avg", drop_rate: float = 0.0):
        super().__init__()
        if norm not in ("ln", "bn", "none"):
            raise ValueError(f"unknown head norm {norm!r}")
        self.in_features = self.num_features = in_features
        self.norm_pre: nn.Module = nn.BatchNorm2d(in_features) if norm == "bn" else nn.Identity()
        self.norm: nn.Module = LayerNorm2d(in_features) if norm == "ln" else nn.Identity()
        self.drop = nn.Dropout(drop_rate)
        self._set_pool(pool_type)
        self.fc = self._make_fc(num_classes)

    def _set_pool(self, pool_type: str) -> None:
        self.pool_type = pool_type or ""
        self.global_pool = SelectAdaptivePool2d(pool_type=self.pool_type)
        self.flatten: nn.Module = nn.Flatten(1) if self.pool_type else nn.Identity()

    def _make_fc(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        if self.pool_type:
            return nn.Linear(self.in_features, num_classes)
        return nn.Conv2d(self.in_features, num_classes, 1)

    def reset(self, num_classes: int, pool_type: str | None = None) -> None:
        if pool_type is not None:
            self._set_pool(pool_type)
        ref = next(self.parameters(), None)
        self.fc = self._make_fc(num_classes)
        if ref is not None:
            self.fc.to(device=ref.device, dtype=ref.dtype)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(self.norm_pre(x))
        x = self.drop(self.flatten(self.norm(x)))
        return x if pre_logits else self.fc(x)

    @torch.no_grad()
    def fuse_(self) -> None:
        """Fold the `bn` head's BatchNorm into the fc (exact: BN, avg pool and fc are affine)."""
        if not (isinstance(self.norm_pre, nn.BatchNorm2d) and isinstance(self.fc, nn.Linear)):
            return
        if self.pool_type not in ("avg", "fast", "fastavg"):
            return
        bn = self.norm_pre
        t = bn.weight / (bn.running_var + bn.eps).sqrt()
        s = bn.bias - bn.running_mean * t
        self.fc.bias.add_(self.fc.weight @ s)
        self.fc.weight.mul_(t.view(1, -1))
        self.norm_pre = nn.Identity()


@functools.lru_cache(maxsize=None)
def _first_conv(stem: str) -> str:
    """The name of the stem's first convolution in an LKNet (timm's `first_conv`), read off a tiny
    stem of that kind, so it follows `make_stem`; built on the meta device, so it draws nothing from
    torch's random generator (a seeded model and what follows it are unchanged)."""
    with torch.device("meta"):
        tiny = make_stem(stem, 1, 2)
    return next(f"stem.{n}" for n, m in tiny.named_modules() if isinstance(m, nn.Conv2d))


def make_pretrained_cfg(arch: ArchConfig, name: str | None = None, num_classes: int = 1000,
                        in_chans: int = 3) -> dict[str, Any]:
    """timm's `pretrained_cfg` of `arch` built with `num_classes` and `in_chans`, the one helper for
    both ways a model is made (`LKNet(...)` and `timm.create_model`, as timm's `_cfg` is for each of
    its variants). lknas ships no weights, so it describes the model itself: `resolve_data_config`
    gets its input size and channels, and `first_conv` / `classifier` name real modules."""
    reduction = STEM_REDUCTION[arch.stem.type]
    for spec in arch.stages:
        reduction *= DOWNSAMPLE_REDUCTION[spec.downsample]
    pool = max(1, 224 // reduction)
    if in_chans == 3:
        mean, std = IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    else:  # one value per channel, so that timm's transforms fit: ImageNet's averaged over its channels
        mean, std = (sum(IMAGENET_DEFAULT_MEAN) / 3,) * in_chans, (sum(IMAGENET_DEFAULT_STD) / 3,) * in_chans
    return dict(architecture=name or f"lknas_{arch.hash()}", url="", num_classes=num_classes,
                input_size=(in_chans, 224, 224), pool_size=(pool, pool), crop_pct=0.875, interpolation="bicubic",
                mean=mean, std=std, first_conv=_first_conv(arch.stem.type), classifier="head.fc",
                license="apache-2.0", description=arch.summary())


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class LKNet(nn.Module):
    """A large-kernel ConvNet built from an `ArchConfig`: stem, stages, head."""

    def __init__(
        self,
        arch: ArchConfig,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float | None = None,
        drop_path_rate: float | None = None,
        global_pool: str = "avg",
    ):
        super().__init__()
        self.arch = arch
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = arch.head.dropout if drop_rate is None else drop_rate
        self.grad_checkpointing = False

        self.stem = make_stem(arch.stem.type, in_chans, arch.stem.width)
        reduction = STEM_REDUCTION[arch.stem.type]
        dpr_total = arch.drop_path if drop_path_rate is None else drop_path_rate
        n_blocks = sum(arch.depths)
        # linear 0 -> drop_path over all blocks (plain floats: also builds on the meta device)
        dprs = [dpr_total * i / max(1, n_blocks - 1) for i in range(n_blocks)]
        plain_dense = arch.sparsity is None
        stages, self.feature_info = [], []
        prev, start = arch.stem.width, 0
        for i, spec in enumerate(arch.stages):
            plain = plain_dense and spec.kernel.type == "dense" and not spec.kernel.reparam
            stages.append(LKStage(prev, spec, dprs[start:start + spec.depth], plain))
            start += spec.depth
            reduction *= DOWNSAMPLE_REDUCTION[spec.downsample]
            prev = spec.width
            self.feature_info.append(dict(num_chs=prev, reduction=reduction, module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = prev
        self.head = LKHead(prev, num_classes, arch.head.norm, global_pool, self.drop_rate)

        self.apply(_init_weights)

        self.pretrained_cfg: dict[str, Any] = make_pretrained_cfg(arch, num_classes=num_classes, in_chans=in_chans)
        self.default_cfg = self.pretrained_cfg  # timm's alias

    # ----------------------------------------------------------------- timm API
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {n for n, _ in self.named_parameters() if n.endswith("pos_embed")}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(
            stem=r"^stem",
            blocks=r"^stages\.(\d+)" if coarse else [
                (r"^stages\.(\d+)\.downsample", (0,)),
                (r"^stages\.(\d+)\.blocks\.(\d+)", None),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head.reset(num_classes, global_pool)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting() and self.training:
            from timm.models import checkpoint_seq

            for stage in self.stages:
                x = checkpoint_seq(stage.blocks, stage.downsample(x))
            return x
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
