import pytest
import torch
import torch.nn.functional as F
from timm.layers.grn import GlobalResponseNorm
from torch import nn

from lknas.ops import GRN, SE, ConvBN, fold_bn
from lknas.ops.layers import fuse_linear_bn


def _randomize_bn_(bn, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        n = bn.num_features
        bn.running_mean.copy_(torch.randn(n, generator=g))
        bn.running_var.copy_(torch.rand(n, generator=g) + 0.5)
        bn.weight.copy_(torch.randn(n, generator=g))
        bn.bias.copy_(torch.randn(n, generator=g))
    return bn


@pytest.mark.parametrize("channels_last", [True, False])
def test_grn_formula_and_timm(channels_last):
    grn = GRN(6, channels_last=channels_last)
    assert torch.equal(grn.weight, torch.zeros(6)) and torch.equal(grn.bias, torch.zeros(6))
    with torch.no_grad():
        grn.weight.normal_()
        grn.bias.normal_()
    x = torch.randn(2, 6, 5, 4)
    xin = x.permute(0, 2, 3, 1) if channels_last else x
    y = grn(xin)
    y = y.permute(0, 3, 1, 2) if channels_last else y
    gx = x.norm(p=2, dim=(2, 3), keepdim=True)
    nx = gx / (gx.mean(dim=1, keepdim=True) + 1e-6)
    ref = grn.weight.view(1, -1, 1, 1) * (x * nx) + grn.bias.view(1, -1, 1, 1) + x
    torch.testing.assert_close(y, ref)
    timm_grn = GlobalResponseNorm(6, channels_last=channels_last)
    timm_grn.load_state_dict(grn.state_dict())
    torch.testing.assert_close(grn(xin), timm_grn(xin))


def test_se_formula():
    se = SE(8)
    assert se.down.out_channels == 2 and se.down.bias is not None and se.up.bias is not None
    x = torch.randn(2, 8, 5, 5)
    s = torch.sigmoid(se.up(F.relu(se.down(x.mean((2, 3), keepdim=True)))))
    torch.testing.assert_close(se(x), x * s)


@pytest.mark.parametrize("k,stride,groups", [(1, 1, 1), (3, 2, 1), (3, 1, 4), (3, 2, 4)])
def test_convbn_fuse(k, stride, groups):
    m = ConvBN(4, 8, k, stride=stride, groups=groups, act=nn.ReLU)
    _randomize_bn_(m.bn)
    m.eval()
    x = torch.randn(2, 4, 9, 9)
    y = m(x)
    m.fuse()
    assert m.fused and isinstance(m.bn, nn.Identity) and m.conv.bias is not None
    torch.testing.assert_close(m(x), y, atol=1e-5, rtol=0)
    m.fuse()  # idempotent
    torch.testing.assert_close(m(x), y, atol=1e-5, rtol=0)


def test_fold_bn_with_existing_bias_and_linear():
    conv = nn.Conv2d(3, 5, 3, padding=1)
    bn = _randomize_bn_(nn.BatchNorm2d(5)).eval()
    w, b = fold_bn(conv.weight, conv.bias, bn)
    x = torch.randn(1, 3, 6, 6)
    torch.testing.assert_close(F.conv2d(x, w, b, padding=1), bn(conv(x)), atol=1e-5, rtol=0)
    lin = nn.Linear(6, 5, bias=False)
    fused = fuse_linear_bn(lin, bn)
    xl = torch.randn(2, 3, 4, 6)
    ref = bn(lin(xl).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    torch.testing.assert_close(fused(xl), ref, atol=1e-5, rtol=0)
