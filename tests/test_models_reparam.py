import itertools

import pytest
import torch
from torch import nn

from lknas.arch import ArchConfig, HeadSpec, KernelSpec, StageSpec, StemSpec
from lknas.models import build_model, is_deployed, reparameterize
from lknas.models.net import LKStage
from lknas.ops import DeployDWConv, DeployStripeConv, PartialChannels, PeripheralLK

BLOCKS = ["replk", "convnext", "unirep"]
# (name, kernel spec without partial); k = 9 or 11, maps 5x5 (smaller) and 16x16 (larger)
KERNELS = [
    ("dense_reparam", KernelSpec(size=(9,), type="dense", reparam=5)),
    ("dense_plain", KernelSpec(size=(9,), type="dense", reparam=0)),
    ("stripe", KernelSpec(size=(11,), type="stripe", stripe_n=3, reparam=5)),
    ("stripe_no_small", KernelSpec(size=(9,), type="stripe", stripe_n=5, reparam=0)),
    ("peripheral", KernelSpec(size=(11,), type="peripheral", r_c=1, reparam=3, pos_embed=False)),
    ("peripheral_pos", KernelSpec(size=(11, 9), type="peripheral", r_c=1, reparam=5, pos_embed=True)),
    ("peripheral_reversed_scaled", KernelSpec(size=(11,), type="peripheral", r_c=1, reparam=3, pos_embed=True,
                                              grid="coarse_centre", share_scale="both")),
    ("dilated", KernelSpec(size=(9, 3), type="dilated", reparam=None)),
]
PARTIALS = [1.0, 3 / 8]
MAPS = [5, 16]


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN statistics/affines and O(1)-output random weights (incl. layer scale, GRN)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn_params = set()
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) - 0.5)
                bn_params |= {id(m.weight), id(m.bias)}
        for p in module.parameters():
            if id(p) not in bn_params:
                fan = p[0].numel() if p.dim() > 1 else 16
                p.copy_(torch.randn(p.shape, generator=g) / fan**0.5)
    return module


def _stage(block, kernel, partial, in_chs=8, width=8, depth=2):
    spec = StageSpec(
        depth=depth, width=width, kernel=KernelSpec(**{**kernel.__dict__, "partial": partial}), block=block,
        downsample="none", mlp_ratio=2.0, layer_scale=1.0 if block != "replk" else None,
        dw_ratio=1.5 if block == "replk" else None,
    )
    plain = kernel.type == "dense" and not kernel.reparam
    return LKStage(in_chs, spec, [0.0] * depth, plain_dense=plain)


def _lk_modules(model):
    return [b.lk for m in model.modules() if isinstance(m, LKStage) for b in m.blocks if hasattr(b, "lk")]


def _assert_deployed_structure(deploy, partial):
    lks = _lk_modules(deploy)
    assert lks
    for lk in lks:
        if partial < 1:
            assert isinstance(lk, PartialChannels)
            lk = lk.mixer
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in lk.modules())
        if type(lk) is DeployStripeConv:  # SLaK's form: k x n (with bias) + n x k [+ a small conv]
            assert len(list(lk.parameters())) == 3 + (lk.small is not None)
        else:
            assert type(lk) is DeployDWConv
            assert len(list(lk.parameters())) == 2
    assert not any(isinstance(m, PeripheralLK) for m in deploy.modules())
    assert not any("pos_embed" in n for n, _ in deploy.named_parameters())
    assert is_deployed(deploy)


CASES = [
    (b, name, kernel, p)
    for b, (name, kernel), p in itertools.product(BLOCKS, KERNELS, PARTIALS)
]


@pytest.mark.parametrize("block,name,kernel,partial", CASES, ids=[f"{c[0]}-{c[1]}-{c[3]:.2f}" for c in CASES])
def test_stage_reparam_equivalence(block, name, kernel, partial):
    stage = randomize_(_stage(block, kernel, partial)).eval()
    assert not is_deployed(stage)
    deploy = reparameterize(stage)
    assert deploy is not stage and not is_deployed(stage)  # the training form is untouched
    _assert_deployed_structure(deploy, partial)
    for side in MAPS:
        x = torch.randn(2, 8, side, side, generator=torch.Generator().manual_seed(side))
        with torch.no_grad():
            y = stage(x)
            y_dep = deploy(x)
        assert (y - x).abs().max() > 0.05  # the blocks do something
        torch.testing.assert_close(y_dep, y, atol=1e-5, rtol=0)


def _net_arch(block, kernel, partial):
    kernel = KernelSpec(**{**kernel.__dict__, "partial": partial})
    stem, down, head = {"replk": ("replk", "replk", "bn"), "convnext": ("patch", "patch", "ln"),
                        "unirep": ("unirep", "conv3", "none")}[block]
    stages = tuple(
        StageSpec(depth=d, width=w, kernel=kernel, block=block, downsample="none" if i == 0 else down,
                  mlp_ratio=2.0, layer_scale=1e-6 if block != "replk" else None, grn=block == "convnext")
        for i, (d, w) in enumerate([(1, 8), (2, 16)])
    )
    return ArchConfig(stem=StemSpec(stem, 12), stages=stages, head=HeadSpec(head))


NET_CASES = [(b, name, kernel, p) for b, (name, kernel), p in itertools.product(BLOCKS, KERNELS, PARTIALS)
             if name in ("dense_reparam", "stripe", "peripheral_pos", "dilated")]


@pytest.mark.parametrize("block,name,kernel,partial", NET_CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[3]:.2f}" for c in NET_CASES])
def test_model_reparam_equivalence(block, name, kernel, partial):
    model = randomize_(build_model(_net_arch(block, kernel, partial), num_classes=5)).eval()
    deploy = reparameterize(model)
    assert not deploy.training and all(not m.training for m in deploy.modules())
    _assert_deployed_structure(deploy, partial)
    # everything is folded except UniRepLKNet's BN after a partial (split) kernel
    bns = [n for n, m in deploy.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if block == "unirep" and partial < 1:
        assert bns and all(n.endswith(".norm") for n in bns)
    else:
        assert bns == []
    for side in (32, 64):  # stage maps 8/4 and 16/8 against kernels 9-11
        x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(side))
        with torch.no_grad():
            torch.testing.assert_close(deploy.forward_features(x), model.forward_features(x), atol=1e-5, rtol=0)
            torch.testing.assert_close(deploy(x), model(x), atol=1e-5, rtol=0)


def test_reparam_is_exact_in_float64():
    kernel = KernelSpec(size=(11,), type="peripheral", r_c=1, reparam=5, pos_embed=True)
    model = randomize_(build_model(_net_arch("replk", kernel, 1.0), num_classes=5)).double().eval()
    deploy = reparameterize(model)
    x = torch.randn(2, 3, 48, 48, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(deploy(x), model(x), atol=1e-10, rtol=0)
    assert all(p.dtype == torch.float64 for p in deploy.parameters())


def test_reparam_inplace_and_idempotent():
    model = randomize_(build_model(_net_arch("unirep", KERNELS[-1][1], 1.0), num_classes=5))
    model.train()
    x = torch.randn(1, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        y = model(x)
    model.train()
    out = reparameterize(model, inplace=True)
    assert out is model and not model.training and is_deployed(model)
    again = reparameterize(out)
    with torch.no_grad():
        torch.testing.assert_close(out(x), y, atol=1e-5, rtol=0)
        torch.testing.assert_close(again(x), y, atol=1e-5, rtol=0)


def test_deploy_kernel_sizes_and_param_counts():
    kernel = KernelSpec(size=(11,), type="peripheral", r_c=1, reparam=0, pos_embed=True)
    model = build_model(_net_arch("convnext", kernel, 1.0), num_classes=5)
    stage_lk = model.stages[1].blocks[0].lk
    compact = stage_lk.weight.numel()
    deploy = reparameterize(model)
    lk = deploy.stages[1].blocks[0].lk
    assert lk.weight.shape == (16, 1, 11, 11) and lk.bias.shape == (16,)
    assert compact == 16 * 7 * 7  # k' = 7 for k=11, r_c=1


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("partial", PARTIALS)
def test_decomposed_stripe_deploy(block, partial):
    from lknas.ops import DeployStripeConv

    kernel = KernelSpec(size=(11,), type="stripe", stripe_n=5, reparam=5)
    model = randomize_(build_model(_net_arch(block, kernel, partial), num_classes=5)).eval()
    forms = {name: "dense" for name, m in model.named_modules() if type(m).__name__ == "StripeLK"}
    dense = reparameterize(model, stripe_forms=forms)
    deploy = reparameterize(model)  # no resolution: SLaK's decomposed form
    assert is_deployed(deploy)
    lks = _lk_modules(deploy)
    for lk in lks:
        lk = lk.mixer if partial < 1 else lk
        assert type(lk) is DeployStripeConv and lk.small is None
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in lk.modules())
    n_dense = sum(p.numel() for p in dense.parameters())
    n_dec = sum(p.numel() for p in deploy.parameters())
    assert n_dec < n_dense
    for side in (32, 64):
        x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(side))
        with torch.no_grad():
            torch.testing.assert_close(deploy(x), model(x), atol=1e-5, rtol=0)
