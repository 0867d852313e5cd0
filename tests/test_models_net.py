import itertools
import re

import pytest
import torch
from torch import nn

from lknas.arch import ArchConfig, HeadSpec, KernelSpec, StageSpec, StemSpec
from lknas.models import LKNet, build_model
from lknas.ops import DenseLK, DilatedLK, PartialChannels, PeripheralLK, StripeLK

CONVNEXT_TINY_PARAMS = 28_589_128  # timm convnext_tiny

KERNELS = {
    "dense": KernelSpec(size=(7,), type="dense", reparam=3),
    "plain": KernelSpec(size=(7,), type="dense", reparam=0),
    "stripe": KernelSpec(size=(9,), type="stripe", stripe_n=3, reparam=5),
    "peripheral": KernelSpec(size=(11,), type="peripheral", r_c=1, m=2, reparam=3, pos_embed=True),
    "dilated": KernelSpec(size=(9, 3), type="dilated", reparam=None),
}
STEM_OF = {"replk": "replk", "convnext": "patch", "unirep": "unirep"}
DOWN_OF = {"replk": "replk", "convnext": "patch", "unirep": "conv3"}
HEAD_OF = {"replk": "bn", "convnext": "ln", "unirep": "none"}


def tiny_arch(block, kernel, depths=(1, 2), widths=(8, 16), stem_width=8, drop_path=0.0, head=None):
    stages = tuple(
        StageSpec(
            depth=d, width=w, kernel=kernel, block=block, downsample="none" if i == 0 else DOWN_OF[block],
            layer_scale=1e-6 if block != "replk" else None, dw_ratio=1.5 if block == "replk" else None,
            mlp_ratio=2.0,
        )
        for i, (d, w) in enumerate(zip(depths, widths))
    )
    return ArchConfig(
        stem=StemSpec(STEM_OF[block], stem_width), stages=stages, head=HeadSpec(head or HEAD_OF[block]),
        drop_path=drop_path,
    )


def convnext_tiny_arch(grn=False, layer_scale=1e-6):
    kernel = KernelSpec(size=(7,), type="dense", reparam=0)
    stages = tuple(
        StageSpec(depth=d, width=w, kernel=kernel, block="convnext", downsample="none" if i == 0 else "patch",
                  layer_scale=layer_scale, grn=grn)
        for i, (d, w) in enumerate(zip((3, 3, 9, 3), (96, 192, 384, 768)))
    )
    return ArchConfig(stem=StemSpec("patch", 96), stages=stages, head=HeadSpec("ln"))


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_convnext_tiny_param_count_matches_timm():
    with torch.device("meta"):  # builds without allocating or initializing 28.6M weights
        model = build_model(convnext_tiny_arch())
    assert n_params(model) == CONVNEXT_TINY_PARAMS
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def _map_timm_key(key):
    key = key.replace(".conv_dw.", ".lk.lk.conv.").replace(".mlp.fc1.", ".fc1.").replace(".mlp.fc2.", ".fc2.")
    return key.replace(".mlp.grn.", ".grn.")


@pytest.mark.parametrize("v2", [False, True])
def test_convnext_matches_timm_numerically(v2):
    from timm.models.convnext import ConvNeXt

    dims, depths = (8, 16, 24, 32), (1, 2, 1, 1)
    ref = ConvNeXt(depths=depths, dims=dims, num_classes=5, use_grn=v2, ls_init_value=None if v2 else 1e-6)
    kernel = KernelSpec(size=(7,), type="dense", reparam=0)
    arch = ArchConfig(
        stem=StemSpec("patch", 8),
        stages=tuple(StageSpec(depth=d, width=w, kernel=kernel, block="convnext",
                               downsample="none" if i == 0 else "patch", grn=v2,
                               layer_scale=None if v2 else 1e-6)
                     for i, (d, w) in enumerate(zip(depths, dims))),
        head=HeadSpec("ln"),
    )
    model = build_model(arch, num_classes=5)
    sd = ref.state_dict()
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(v.shape, generator=g) * 0.3 for k, v in sd.items()}
    ref.load_state_dict(sd)
    mine = {_map_timm_key(k): v for k, v in sd.items()}
    missing, unexpected = model.load_state_dict(mine, strict=True)
    assert not missing and not unexpected
    assert n_params(model) == n_params(ref)
    x = torch.randn(2, 3, 32, 32)
    ref.eval(), model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("block,kname", list(itertools.product(["replk", "convnext", "unirep"], KERNELS)))
def test_every_block_and_kernel_builds_and_runs(block, kname):
    arch = tiny_arch(block, KERNELS[kname])
    model = build_model(arch, num_classes=7)
    x = torch.randn(2, 3, 32, 32)
    y = model(x)
    assert y.shape == (2, 7)
    feats = model.forward_features(x)
    assert feats.shape == (2, 16, 4, 4)
    assert model.num_features == 16
    y.sum().backward()  # training form trains
    assert all(p.grad is not None for n, p in model.named_parameters() if "head" in n)
    expected = {"dense": DenseLK, "plain": DenseLK, "stripe": StripeLK, "peripheral": PeripheralLK,
                "dilated": (DilatedLK, DenseLK)}[kname]
    lks = [b.lk for s in model.stages for b in s.blocks if hasattr(b, "lk")]
    assert len(lks) == 3 and all(isinstance(m, expected) for m in lks)
    model.reset_classifier(0)
    pooled = model(x)
    assert pooled.shape == (2, 16)
    assert model.num_classes == 0 and isinstance(model.get_classifier(), nn.Identity)
    torch.testing.assert_close(pooled, model.forward_head(model.forward_features(x), pre_logits=True))


def test_replk_stage_alternates_replk_and_convffn():
    model = build_model(tiny_arch("replk", KERNELS["dense"], depths=(2, 1)))
    names = [type(b).__name__ for b in model.stages[0].blocks]
    assert names == ["RepLKBlock", "ConvFFN", "RepLKBlock", "ConvFFN"]
    assert model.stages[0].blocks[0].lk.channels == 12  # dw_ratio 1.5


@pytest.mark.parametrize("block, zeroed", [("replk", 6), ("unirep", 3), ("convnext", 0)])
def test_zero_init_last_makes_every_residual_block_start_as_the_identity(block, zeroed):
    from lknas.models.blocks import zero_init_last

    torch.manual_seed(0)
    model = build_model(tiny_arch(block, KERNELS["dense"], depths=(2, 1)), num_classes=3)
    assert zero_init_last(model) == zeroed  # replk: 3 RepLK blocks + 3 ConvFFNs; ConvNeXt has no BN to zero
    model.eval()
    for blk in (b for stage in model.stages for b in stage.blocks if zeroed):
        bn = blk.pw2.bn if hasattr(blk, "pw2") else blk.fc2_bn
        x = torch.randn(2, bn.num_features, 8, 8)
        assert torch.equal(blk(x), x)  # a zero-scale BN: the branch adds exactly 0


def test_kernel_sizes_cycle_over_blocks():
    arch = tiny_arch("unirep", KernelSpec(size=(9, 3), type="dilated", reparam=None), depths=(1, 3))
    model = build_model(arch)
    ks = [b.lk.k for b in model.stages[1].blocks]
    assert ks == [9, 3, 9]
    assert isinstance(model.stages[1].blocks[0].lk, DilatedLK)
    plain = model.stages[1].blocks[1].lk
    # UniRepLKNet: a 3x3 DW conv without its own BN, the block's BN follows
    assert isinstance(plain, DenseLK) and isinstance(plain.lk.bn, nn.Identity)
    assert isinstance(model.stages[1].blocks[1].norm, nn.BatchNorm2d)


def test_convnext_plain_only_without_reparam_and_sparsity():
    from lknas.arch import SparsitySpec

    arch = tiny_arch("convnext", KERNELS["plain"])
    lk = build_model(arch).stages[0].blocks[0].lk
    assert lk.lk.conv.bias is not None and isinstance(lk.lk.bn, nn.Identity)
    lk = build_model(arch.replace(sparsity=SparsitySpec())).stages[0].blocks[0].lk
    assert lk.lk.conv.bias is None and isinstance(lk.lk.bn, nn.BatchNorm2d)
    lk = build_model(tiny_arch("convnext", KERNELS["dense"])).stages[0].blocks[0].lk
    assert lk.lk.conv.bias is None and isinstance(lk.lk.bn, nn.BatchNorm2d) and lk.small is not None


@pytest.mark.parametrize("partial", [1.0, 3 / 8])
@pytest.mark.parametrize("block", ["replk", "convnext", "unirep"])
def test_pos_embed_shared_per_stage(block, partial):
    kernel = KernelSpec(size=(11, 9), type="peripheral", r_c=1, pos_embed=True, partial=partial)
    model = build_model(tiny_arch(block, kernel, depths=(3, 2)))
    for stage in model.stages:
        pos = stage.pos_embed
        assert isinstance(pos, nn.Parameter) and pos.shape[-2:] == (11, 11)
        periph = [m for m in stage.modules() if isinstance(m, PeripheralLK)]
        assert len(periph) == stage.blocks.__len__() // (2 if block == "replk" else 1)
        assert all(m.pos_embed is pos for m in periph)
        assert pos.shape[0] == periph[0].channels
        if partial < 1:
            assert all(isinstance(b.lk, PartialChannels) for b in stage.blocks if hasattr(b, "lk"))
    pos_ids = [id(s.pos_embed) for s in model.stages]
    assert len(set(pos_ids)) == 2  # one per stage, not shared across stages
    params = list(model.parameters())
    assert sum(1 for p in params if id(p) in pos_ids) == 2  # listed once each
    assert n_params(model) == sum(p.numel() for p in {id(p): p for p in params}.values())
    assert model.no_weight_decay() == {"stages.0.pos_embed", "stages.1.pos_embed"}
    # gradients from all blocks accumulate into the one shared tensor
    model(torch.randn(1, 3, 32, 32)).sum().backward()
    assert model.stages[0].pos_embed.grad is not None


@pytest.mark.parametrize("block", ["replk", "convnext"])
def test_pos_embed_changes_the_net_through_its_batchnorm(block):
    """In training mode the BN after the peripheral conv removes any per-channel constant, which
    is all the literal formula (<w, h> added) would contribute. The weight-space embedding
    survives it: the logits and the block outputs change, by something that varies over space."""
    kernel = KernelSpec(size=(11,), type="peripheral", r_c=1, pos_embed=True)
    torch.manual_seed(0)
    model = build_model(tiny_arch(block, kernel, depths=(1, 1))).train()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    lk = model.stages[0].blocks[0].lk
    with torch.no_grad():
        model.stages[0].pos_embed.normal_(0.0, 0.1)
        for m in model.modules():  # ConvNeXt's layer scale (1e-6) would hide any change
            if getattr(m, "gamma", None) is not None and m.gamma.dim() == 1:
                m.gamma.fill_(1.0)
        y = model(x)
        mix_in = torch.randn(4, lk.channels, 8, 8, generator=torch.Generator().manual_seed(2))
        z = lk(mix_in)
        for stage in model.stages:
            stage.pos_embed.zero_()
        y0, z0 = model(x), lk(mix_in)
    assert (y - y0).abs().max() > 1e-4
    assert (z - z0).flatten(2).std(dim=-1).min() > 1e-3  # the old form: ~1e-8


def test_no_pos_embed_unless_asked():
    kernel = KernelSpec(size=(11,), type="peripheral", r_c=1, pos_embed=False)
    model = build_model(tiny_arch("convnext", kernel))
    assert all(s.pos_embed is None for s in model.stages)
    assert not any("pos_embed" in n for n, _ in model.named_parameters())


def test_drop_path_linear_schedule():
    arch = tiny_arch("replk", KERNELS["dense"], depths=(2, 3), drop_path=0.4)
    model = build_model(arch)
    rates = []
    for stage in model.stages:
        for b in stage.blocks:
            dp = b.drop_path
            rates.append(getattr(dp, "drop_prob", 0.0))
    # each (RepLK, ConvFFN) pair shares one rate, rates go 0 -> 0.4 over the 5 depth positions
    expected = torch.linspace(0, 0.4, 5).tolist()
    assert rates[0::2] == pytest.approx(expected) and rates[1::2] == pytest.approx(expected)
    model = build_model(arch, drop_path_rate=0.0)
    assert not any(type(m).__name__ == "DropPath" for m in model.modules())


def test_timm_api_attributes():
    model = build_model(tiny_arch("convnext", KERNELS["stripe"], depths=(1, 1, 1), widths=(8, 16, 24)),
                        num_classes=11, drop_rate=0.1)
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (3, 224, 224) and cfg["num_classes"] == 11
    assert cfg["classifier"] == "head.fc" and cfg["first_conv"] == "stem.0"
    assert model.default_cfg is cfg
    assert dict(model.named_modules())[cfg["first_conv"]].in_channels == 3
    assert isinstance(dict(model.named_modules())[cfg["classifier"]], nn.Linear)
    assert [f["reduction"] for f in model.feature_info] == [4, 8, 16]
    assert [f["num_chs"] for f in model.feature_info] == [8, 16, 24]
    assert [f["module"] for f in model.feature_info] == ["stages.0", "stages.1", "stages.2"]
    assert isinstance(model.stages, nn.Sequential) and model.head.drop.p == 0.1
    assert isinstance(model.arch, ArchConfig)
    model.reset_classifier(4, global_pool="max")
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 4)
    model.reset_classifier(4, global_pool="")
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 4, 2, 2)


@pytest.mark.parametrize("stem,first_conv", [("patch", "stem.0"), ("replk", "stem.0.conv"), ("unirep", "stem.0")])
def test_stems_reduce_by_4_and_in_chans(stem, first_conv):
    arch = tiny_arch("convnext", KERNELS["plain"]).replace(stem=StemSpec(stem, 12))
    model = build_model(arch, in_chans=1)
    assert model.pretrained_cfg["first_conv"] == first_conv
    assert model.stem(torch.randn(1, 1, 32, 32)).shape == (1, 12, 8, 8)
    assert model.forward_features(torch.randn(1, 1, 32, 32)).shape == (1, 16, 4, 4)
    assert isinstance(model.stages[0].downsample, nn.Conv2d)  # 'none' with 12 -> 8 channels


@pytest.mark.parametrize("down", ["patch", "conv3", "replk", "none"])
def test_downsample_types(down):
    arch = tiny_arch("convnext", KERNELS["plain"])
    stages = (arch.stages[0], arch.stages[1].__class__(**{**arch.stages[1].__dict__, "downsample": down}))
    model = build_model(arch.replace(stages=stages))
    out = model.forward_features(torch.randn(1, 3, 32, 32))
    side = 8 if down == "none" else 4
    assert out.shape == (1, 16, side, side)
    assert model.feature_info[1]["reduction"] == (4 if down == "none" else 8)


@pytest.mark.parametrize("norm", ["ln", "bn", "none"])
def test_head_norms(norm):
    model = build_model(tiny_arch("convnext", KERNELS["plain"], head=norm), num_classes=3)
    head = model.head
    assert isinstance(head.norm_pre, nn.BatchNorm2d) == (norm == "bn")
    assert (type(head.norm).__name__ == "LayerNorm2d") == (norm == "ln")
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)


def test_init_is_timm_convnext_style():
    model = build_model(tiny_arch("convnext", KERNELS["dense"], widths=(32, 64)))
    weights = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            weights.append(m.weight.detach().flatten())
            if m.bias is not None:
                assert torch.count_nonzero(m.bias) == 0, name
    std = torch.cat(weights).std().item()
    assert 0.018 < std < 0.022  # trunc_normal(std=.02)


def test_build_model_from_dict_and_yaml(tmp_path):
    arch = tiny_arch("unirep", KERNELS["dilated"])
    m1 = build_model(arch.to_dict(), num_classes=3)
    assert isinstance(m1, LKNet) and m1.arch == arch
    path = tmp_path / "arch.yaml"
    path.write_text(arch.to_yaml())
    # a path goes through lknas.space.load_arch (which may fill in defaults): same network
    shapes = {k: v.shape for k, v in m1.state_dict().items()}
    for src in (str(path), path):
        m2 = build_model(src, num_classes=3)
        assert isinstance(m2.arch, ArchConfig)
        assert {k: v.shape for k, v in m2.state_dict().items()} == shapes
    with pytest.raises(TypeError):
        build_model(42)


def test_group_matcher_covers_all_params():
    model = build_model(tiny_arch("replk", KERNELS["dense"]))
    gm = model.group_matcher()
    pats = [gm["stem"]] + [p for p, _ in gm["blocks"]]
    for name, _ in model.named_parameters():
        if name.startswith("head"):
            continue
        assert any(re.match(p, name) for p in pats), name


@pytest.mark.parametrize("block", ["replk", "convnext", "unirep"])
def test_shortcut_false_removes_the_large_kernel_blocks_identity_and_survives_deploy(block):
    """`shortcut: false` (RepLKNet's ablation): with its branch zeroed, a block without the identity
    outputs zeros where the default block passes x through; the deploy form stays exact."""
    from lknas.models import reparameterize
    from lknas.space.loader import load_arch

    arch = tiny_arch(block, KERNELS["dense"])
    cut = arch.replace(stages=tuple(s.__class__(**{**s.__dict__, "shortcut": False}) for s in arch.stages))
    assert cut.hash() != arch.hash() and "no-shortcut" in cut.summary() and "no-shortcut" not in arch.summary()
    assert "shortcut" not in arch.to_yaml() and ArchConfig.from_yaml(cut.to_yaml()) == cut
    assert [s.shortcut for s in load_arch(cut.to_dict()).stages] == [False, False]  # the space format takes it
    assert [s.shortcut for s in load_arch(arch.to_dict()).stages] == [None, None]
    x = torch.randn(2, 8, 8, 8)
    for a, passes in ((arch, True), (cut, False)):
        torch.manual_seed(0)
        blk = build_model(a, num_classes=3).eval().stages[0].blocks[0]
        last = {"replk": lambda b: b.pw2.bn.weight, "convnext": lambda b: b.fc2.weight,
                "unirep": lambda b: b.fc2_bn.weight}[block](blk)
        with torch.no_grad():
            last.zero_()
            y = blk(x)
        assert torch.equal(y, x) if passes else torch.count_nonzero(y) == 0
    torch.manual_seed(0)
    model = build_model(cut, num_classes=3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model.forward_features(x)  # the head starts near zero: compare the features
        torch.manual_seed(0)
        assert not torch.allclose(ref, build_model(arch, num_classes=3).eval().forward_features(x), rtol=1e-3, atol=0)
        reparameterize(model)
        assert torch.allclose(model.forward_features(x), ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))


def test_the_timm_config_draws_nothing_from_the_random_generator():
    """A seeded build is the same whether the first-conv name was looked up before or not."""
    from lknas.models.net import _first_conv, make_pretrained_cfg

    arch = tiny_arch("convnext", KERNELS["plain"]).replace(stem=StemSpec("replk", 12))
    _first_conv.cache_clear()
    torch.manual_seed(0)
    state = torch.random.get_rng_state()
    assert make_pretrained_cfg(arch)["first_conv"] == "stem.0.conv"
    assert torch.equal(torch.random.get_rng_state(), state)
