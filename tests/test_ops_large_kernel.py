import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lknas.ops.dwconv as dwconv_mod
import lknas.ops.large_kernel as lk_mod
from lknas.arch import KernelSpec
from lknas.ops import (
    DILATED_BRANCHES,
    DenseLK,
    DeployDWConv,
    DepthwiseConv2d,
    DilatedLK,
    PartialChannels,
    PeripheralLK,
    StripeLK,
    dwconv2d,
    make_large_kernel,
    n_mixed_channels,
    peripheral_grid,
)
from lknas.ops.large_kernel import dilate_kernel, pad_kernel

C = 4
# feature maps smaller and larger than the kernels used below (k = 9 / 11), one rectangular
SIZES = [(5, 6), (20, 17)]


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BN statistics so that folding is actually exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
        bn_params = {id(p) for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                     for p in m.parameters()}
        for p in module.parameters():
            if id(p) in bn_params:
                continue
            fan = p[0].numel() if p.dim() > 1 else 25
            p.copy_(torch.randn(p.shape, generator=g) / fan**0.5)
    return module


def _x(hw, c=C, seed=1):
    return torch.randn(2, c, *hw, generator=torch.Generator().manual_seed(seed))


def _check_merged(module, hw, atol=1e-5):
    module.eval()
    x = _x(hw, module.channels if hasattr(module, "channels") else C)
    with torch.no_grad():
        y = module(x)
        w, b = module.merged_kernel()
        y2 = F.conv2d(x, w, b, padding=w.shape[-1] // 2, groups=x.shape[1])
        deploy = DeployDWConv.from_module(module)
        y3 = deploy(x)
    assert y.shape == x.shape
    assert y.abs().max() > 0.1  # not trivially zero
    torch.testing.assert_close(y2, y, atol=atol, rtol=0)
    torch.testing.assert_close(y3, y, atol=atol, rtol=0)
    return w, b


KERNEL_MODULES = {
    "dense": lambda: DenseLK(C, 9),
    "dense_reparam": lambda: DenseLK(C, 9, reparam=3),
    "dense_bias_plain": lambda: DenseLK(C, 9, bias=True),
    "stripe": lambda: StripeLK(C, 9, n=3, reparam=5),
    "stripe_no_small": lambda: StripeLK(C, 11, n=5, reparam=0),
    "peripheral": lambda: PeripheralLK(C, 11, r_c=1),
    "peripheral_reparam": lambda: PeripheralLK(C, 11, r_c=1, reparam=5),
    "peripheral_pos": lambda: PeripheralLK(C, 11, r_c=1, reparam=3, pos_embed=nn.Parameter(torch.zeros(C, 11, 11))),
    "peripheral_pos_crop": lambda: PeripheralLK(C, 9, r_c=0, pos_embed=nn.Parameter(torch.zeros(C, 13, 13))),
    "dilated9": lambda: DilatedLK(C, 9),
    "dilated11": lambda: DilatedLK(C, 11),
    "dilated3_fallback": lambda: DilatedLK(C, 3),
}


@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("name", list(KERNEL_MODULES))
def test_merged_kernel_equals_eval_output(name, hw):
    module = randomize_(KERNEL_MODULES[name]())
    w, b = _check_merged(module, hw)
    assert w.shape == (C, 1, module.k, module.k) and b.shape == (C,)


@pytest.mark.parametrize("k", sorted(DILATED_BRANCHES))
def test_dilated_every_table_entry(k):
    module = randomize_(DilatedLK(C, k))
    assert len(module.dilated) == len(DILATED_BRANCHES[k][0])
    for (ks, r), branch in zip(zip(*DILATED_BRANCHES[k]), module.dilated):
        assert branch.conv.kernel_size == (ks, ks) and branch.dilation == r
        assert r * (ks - 1) + 1 <= k
    _check_merged(module, (6, 7))
    _check_merged(module, (19, 21))


def test_dilated_table_matches_reference():
    assert DILATED_BRANCHES[17] == ((5, 9, 3, 3, 3), (1, 2, 4, 5, 7))
    assert DILATED_BRANCHES[15] == ((5, 7, 3, 3, 3), (1, 2, 3, 5, 7))
    assert DILATED_BRANCHES[13] == ((5, 7, 3, 3, 3), (1, 2, 3, 4, 5))
    assert DILATED_BRANCHES[11] == ((5, 5, 3, 3, 3), (1, 2, 3, 4, 5))
    assert DILATED_BRANCHES[9] == ((5, 5, 3, 3), (1, 2, 3, 4))
    assert DILATED_BRANCHES[7] == ((5, 3, 3), (1, 2, 3))
    assert DILATED_BRANCHES[5] == ((3, 3), (1, 2))


@pytest.mark.parametrize("k", [1, 3, 19, 21])
def test_dilated_fallback_is_plain_conv_bn(k):
    module = randomize_(DilatedLK(C, k))
    assert len(module.dilated) == 0
    assert isinstance(module.lk.bn, nn.BatchNorm2d)
    _check_merged(module, (6, 5)) if k > 1 else None


def test_dilate_kernel_matches_dilated_conv():
    w = torch.randn(C, 1, 3, 3)
    x = _x((12, 13))
    for r in (1, 2, 4):
        spread = dilate_kernel(w, r)
        assert spread.shape[-1] == r * 2 + 1
        ref = F.conv2d(x, w, padding=r, dilation=r, groups=C)
        torch.testing.assert_close(dwconv2d(x, spread), ref, atol=1e-5, rtol=0)


def test_pad_kernel_centres():
    w = torch.randn(C, 1, 3, 5)
    p = pad_kernel(w, 7)
    assert p.shape == (C, 1, 7, 7)
    torch.testing.assert_close(p[:, :, 2:5, 1:6], w)
    mask = torch.ones(7, 7, dtype=torch.bool)
    mask[2:5, 1:6] = False
    assert p[:, :, mask].abs().sum() == 0


# ----------------------------------------------------------------- dwconv2d
@pytest.mark.parametrize("kh,kw", [(3, 3), (7, 3), (3, 9), (1, 5)])
def test_dwconv2d_same_padding(kh, kw):
    x = _x((6, 11))
    w = torch.randn(C, 1, kh, kw)
    b = torch.randn(C)
    y = dwconv2d(x, w, b)
    assert y.shape == x.shape
    ref = torch.stack([F.conv2d(x[:, c:c + 1], w[c:c + 1], b[c:c + 1], padding=(kh // 2, kw // 2))[:, 0]
                       for c in range(C)], 1)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=0)


def test_depthwise_conv_rejects_even():
    with pytest.raises(ValueError):
        DepthwiseConv2d(C, 4)
    with pytest.raises(ValueError):
        DepthwiseConv2d(C, (5, 2))


def test_large_kernel_convs_go_through_dwconv2d(monkeypatch):
    calls = []

    def counting(x, weight, bias=None):
        calls.append(tuple(weight.shape[-2:]))
        return F.conv2d(x, weight, bias, padding=(weight.shape[-2] // 2, weight.shape[-1] // 2), groups=x.shape[1])

    monkeypatch.setattr(dwconv_mod, "dwconv2d", counting)
    monkeypatch.setattr(lk_mod, "dwconv2d", counting)
    x = _x((8, 8))
    expected = {
        "dense_reparam": [(9, 9), (3, 3)],
        "stripe": [(9, 3), (3, 9), (5, 5)],
        "peripheral_reparam": [(11, 11), (5, 5)],
        "dilated9": [(9, 9), (5, 5)],  # the d=1 branch; d>1 branches use F.conv2d with dilation
    }
    for name, shapes in expected.items():
        calls.clear()
        module = KERNEL_MODULES[name]()
        module(x)
        assert calls == shapes, name
        calls.clear()
        DeployDWConv.from_module(module.eval())(x)
        assert calls == [(module.k, module.k)]


# ----------------------------------------------------------------- stripe
@pytest.mark.parametrize("hw", [(7, 12), (13, 4), (1, 1)])
def test_stripe_shapes_and_padding(hw):
    module = randomize_(StripeLK(C, 11, n=3, reparam=0)).eval()
    assert module.lk_h.conv.weight.shape == (C, 1, 11, 3)
    assert module.lk_w.conv.weight.shape == (C, 1, 3, 11)
    assert module.lk_h.conv.padding == (5, 1) and module.lk_w.conv.padding == (1, 5)
    x = _x(hw)
    assert module(x).shape == x.shape
    # the k x n branch alone is a zero-padded-to-centre k x k kernel
    with torch.no_grad():
        w = module.lk_h.conv.weight
        ref = F.conv2d(x, pad_kernel(w, 11), padding=5, groups=C)
        torch.testing.assert_close(module.lk_h.conv(x), ref, atol=1e-5, rtol=0)


def test_stripe_validation():
    with pytest.raises(ValueError):
        StripeLK(C, 5, n=5)
    with pytest.raises(ValueError):
        StripeLK(C, 9, n=4)


# ----------------------------------------------------------------- peripheral
def test_peripheral_expansion_follows_grid():
    module = PeripheralLK(C, 11, r_c=1)
    grid = peripheral_grid(11, 1)
    assert module.weight.shape == (C, 1, len(grid), len(grid))
    w = module.expanded_weight()
    assert w.shape == (C, 1, 11, 11)
    edges = [0]
    for s in grid:
        edges.append(edges[-1] + s)
    for a in range(len(grid)):
        for b in range(len(grid)):
            cell = w[:, 0, edges[a]:edges[a + 1], edges[b]:edges[b + 1]]
            assert torch.equal(cell, module.weight[:, 0, a:a + 1, b:b + 1].expand_as(cell))


def test_peripheral_gradients_reach_compact_weight():
    module = PeripheralLK(C, 11, r_c=1, reparam=3)
    kp = module.k_prime
    params = dict(module.named_parameters())
    assert params["weight"].shape == (C, 1, kp, kp) and kp < 11
    assert not any(p.shape[-2:] == (11, 11) for p in module.parameters())
    x = _x((9, 9))
    module(x).square().sum().backward()
    g = module.weight.grad
    assert g is not None and g.shape == (C, 1, kp, kp) and g.abs().sum() > 0
    # the compact gradient is the sum of the expanded kernel's gradient over each cell
    wexp = module.expanded_weight().detach().requires_grad_(True)
    y = module.bn(dwconv2d(x, wexp)) + module.small(x)
    y.square().sum().backward()
    grid = module.grid
    ref = torch.zeros_like(g)
    edges = torch.cat([torch.zeros(1, dtype=torch.long), grid.cumsum(0)])
    for a in range(kp):
        for b in range(kp):
            ref[:, :, a, b] = wexp.grad[:, :, edges[a]:edges[a + 1], edges[b]:edges[b + 1]].sum((-2, -1))
    torch.testing.assert_close(g, ref, atol=1e-4, rtol=1e-4)


def _pos_module(k0: int = 11, pos: nn.Parameter | None = None) -> PeripheralLK:
    pos = pos if pos is not None else nn.Parameter(torch.randn(C, k0, k0) * 0.2)
    return randomize_(PeripheralLK(C, 11, r_c=1, pos_embed=pos)).eval()


@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("k0", [11, 15])
def test_peripheral_pos_embed_is_added_to_the_expanded_kernel(hw, k0):
    pos = nn.Parameter(torch.randn(C, k0, k0))
    module = _pos_module(k0, pos)
    assert module.pos_embed is pos
    x = _x(hw)
    with torch.no_grad():
        off = (k0 - 11) // 2
        applied = module.expanded_weight() + pos[:, None, off:off + 11, off:off + 11]
        ref = module.bn(F.conv2d(x, applied, padding=5, groups=C))
        torch.testing.assert_close(module(x), ref, atol=1e-5, rtol=0)
        # the applied kernel is no longer constant inside a shared cell of the grid
        assert applied[:, :, 0, :module.grid[0]].std(dim=-1).min() > 1e-3
    _check_merged(module, hw)


@pytest.mark.parametrize("hw", SIZES)
def test_peripheral_pos_embed_contribution_varies_over_space(hw):
    """The old input-side form added <w, h>: a per-channel constant after BN (spatial std ~1e-8).
    Here the difference with and without the embedding is a feature map that varies over space."""
    module = _pos_module()
    x = _x(hw)
    with torch.no_grad():
        with_pos = module(x)
        pos, module.pos_embed = module.pos_embed, None
        without = module(x)
        module.pos_embed = pos
    diff = with_pos - without
    assert diff.abs().max() > 1e-2  # the embedding changes the output
    assert diff.flatten(2).std(dim=-1).min() > 1e-3  # ... and not by a constant per channel


def test_peripheral_pos_embed_keeps_pruned_cells_zero():
    """h lands only on the kernel's support: a compact weight masked to zero (dynamic sparsity)
    leaves its whole expanded cell at zero in the applied and deploy kernels."""
    module = _pos_module()
    with torch.no_grad():
        module.weight[:, :, 0, :] = 0.0  # the outermost row of cells pruned
    width = int(module.grid[0])
    assert torch.all(module.applied_weight()[:, :, :width, :] == 0)
    assert torch.all(module.applied_weight()[:, :, width:, :] != 0)
    w, _ = module.merged_kernel()
    assert torch.all(w[:, :, :width, :] == 0)
    _check_merged(module, (9, 9))


def test_peripheral_pos_embed_gets_gradient_and_shape_check():
    pos = nn.Parameter(torch.zeros(C, 11, 11))
    module = PeripheralLK(C, 11, r_c=1, pos_embed=pos)
    module(_x((6, 6))).sum().backward()
    assert pos.grad is not None and pos.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        PeripheralLK(C, 11, r_c=1, pos_embed=nn.Parameter(torch.zeros(C, 9, 9)))
    with pytest.raises(ValueError):
        PeripheralLK(C, 11, r_c=1, pos_embed=nn.Parameter(torch.zeros(C + 1, 11, 11)))


# ----------------------------------------------------------------- dense details
def test_dense_plain_bias_has_no_bn():
    module = DenseLK(C, 7, bias=True)
    assert module.lk.conv.bias is not None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in module.modules())
    assert sum(p.numel() for p in module.parameters()) == C * 49 + C
    module = DenseLK(C, 7)
    assert module.lk.conv.bias is None and isinstance(module.lk.bn, nn.BatchNorm2d)


def test_invalid_kernel_arguments():
    with pytest.raises(ValueError):
        DenseLK(C, 8)
    with pytest.raises(ValueError):
        DenseLK(C, 5, reparam=5)
    with pytest.raises(ValueError):
        DenseLK(C, 9, reparam=4)


# ----------------------------------------------------------------- partial + factory
def test_partial_channels_identity_part_and_deploy():
    mixer = randomize_(DenseLK(3, 9, reparam=3))
    module = PartialChannels(mixer, 8, 3).eval()
    x = _x((10, 10), c=8)
    with torch.no_grad():
        y = module(x)
        assert torch.equal(y[:, 3:], x[:, 3:])
        torch.testing.assert_close(y[:, :3], mixer(x[:, :3]))
        module.mixer = DeployDWConv.from_module(mixer)
        torch.testing.assert_close(module(x), y, atol=1e-5, rtol=0)


@pytest.mark.parametrize("channels,partial,n", [(8, 1.0, 8), (8, 3 / 8, 3), (16, 3 / 8, 6), (3, 0.1, 1), (10, 0.25, 2)])
def test_n_mixed_channels(channels, partial, n):
    assert n_mixed_channels(channels, partial) == n


def test_make_large_kernel_types_and_defaults():
    m = make_large_kernel(KernelSpec(size=(9,), type="dense", reparam=3), C, 9)
    assert isinstance(m, DenseLK) and m.small.conv.kernel_size == (3, 3)
    m = make_large_kernel(KernelSpec(size=(9,), type="dense"), C, 9, bias=True, norm=False)
    assert isinstance(m, DenseLK) and m.lk.conv.bias is not None and isinstance(m.lk.bn, nn.Identity)
    m = make_large_kernel(KernelSpec(size=(13,), type="stripe", reparam=5), C, 13)
    assert isinstance(m, StripeLK) and m.n == 5 and m.reparam == 5
    m = make_large_kernel(KernelSpec(size=(13,), type="stripe", stripe_n=3, reparam=0), C, 13)
    assert m.n == 3 and m.small is None
    m = make_large_kernel(KernelSpec(size=(3,), type="stripe", reparam=5), C, 3)
    assert isinstance(m, DenseLK) and m.k == 3 and m.small is None  # n >= k, reparam >= k
    m = make_large_kernel(KernelSpec(size=(13,), type="peripheral"), C, 13)
    assert isinstance(m, PeripheralLK) and m.r_c == 2 and m.m == 2
    m = make_large_kernel(KernelSpec(size=(13,), type="peripheral", r_c=1, m=3, reparam=5), C, 13)
    assert (m.r_c, m.m, m.reparam) == (1, 3, 5)
    m = make_large_kernel(KernelSpec(size=(13,), type="dilated"), C, 13)
    assert isinstance(m, DilatedLK) and len(m.dilated) == 5
    m = make_large_kernel(KernelSpec(size=(3,), type="dilated"), C, 3, norm=False)
    assert isinstance(m, DenseLK) and isinstance(m.lk.bn, nn.Identity)
    m = make_large_kernel(KernelSpec(size=(9,), type="dense", partial=0.5), 8, 9)
    assert isinstance(m, PartialChannels) and m.n_mixed == 4 and m.mixer.channels == 4
    with pytest.raises(ValueError):
        make_large_kernel(KernelSpec(size=(9,), type="bogus"), C, 9)


def test_kernel_module_registries():
    from lknas.ops import DEPLOY_KERNEL_MODULES, LARGE_KERNEL_MODULES, DeployStripeConv

    assert set(LARGE_KERNEL_MODULES) == {DenseLK, StripeLK, PeripheralLK, DilatedLK}
    assert set(DEPLOY_KERNEL_MODULES) == {DeployDWConv, DeployStripeConv}
    for factory in KERNEL_MODULES.values():
        module = factory()
        assert isinstance(module, LARGE_KERNEL_MODULES) and callable(module.merged_kernel)
        assert isinstance(DeployDWConv.from_module(module.eval()), DEPLOY_KERNEL_MODULES)


@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("n,reparam", [(3, 3), (5, 3), (3, 5), (5, 0)])
def test_stripe_decomposed_deploy(n, reparam, hw):
    from lknas.ops import DeployStripeConv

    module = randomize_(StripeLK(C, 11, n=n, reparam=reparam)).eval()
    deploy = DeployStripeConv.from_module(module)
    assert deploy.lk_h.weight.shape == (C, 1, 11, n) and deploy.lk_w.weight.shape == (C, 1, n, 11)
    assert (deploy.small is not None) == (reparam > n)  # a small kernel that fits is folded in
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deploy.modules())
    x = _x(hw)
    with torch.no_grad():
        torch.testing.assert_close(deploy(x), module(x), atol=1e-5, rtol=0)
        w, b = deploy.merged_kernel()
        w2, b2 = module.merged_kernel()
        torch.testing.assert_close(w, w2, atol=1e-6, rtol=0)
        torch.testing.assert_close(b, b2, atol=1e-6, rtol=0)
