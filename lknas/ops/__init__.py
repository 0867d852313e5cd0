"""Large-kernel operators: the depthwise conv entry point, the peripheral grid, kernel modules."""
from lknas.ops.dwconv import DepthwiseConv2d, dwconv2d
from lknas.ops.large_kernel import (
    DEPLOY_KERNEL_MODULES,
    DILATED_BRANCHES,
    LARGE_KERNEL_MODULES,
    DeployDWConv,
    DeployStripeConv,
    DenseLK,
    DilatedLK,
    DWConvBN,
    PartialChannels,
    PeripheralLK,
    StripeLK,
    make_large_kernel,
    n_mixed_channels,
)
from lknas.ops.layers import GRN, SE, ConvBN, fold_bn
from lknas.ops.peripheral import peripheral_grid, peripheral_k_prime

__all__ = [
    "dwconv2d",
    "DepthwiseConv2d",
    "peripheral_grid",
    "peripheral_k_prime",
    "DILATED_BRANCHES",
    "LARGE_KERNEL_MODULES",
    "DEPLOY_KERNEL_MODULES",
    "DWConvBN",
    "DenseLK",
    "StripeLK",
    "PeripheralLK",
    "DilatedLK",
    "DeployDWConv",
    "DeployStripeConv",
    "PartialChannels",
    "make_large_kernel",
    "n_mixed_channels",
    "GRN",
    "SE",
    "ConvBN",
    "fold_bn",
]
