"""Large-kernel operators: the depthwise conv entry point, the peripheral grid, kernel modules.

The names below are imported on first use (`lknas.lazy`): `lknas.ops.kernel_rules` and
`lknas.ops.peripheral` work without torch.
"""
from lknas.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("dwconv2d", "DepthwiseConv2d"), "lknas.ops.dwconv"),
    **dict.fromkeys(("keep_freed_memory",), "lknas.ops.allocator"),
    **dict.fromkeys(("peripheral_grid", "peripheral_k_prime"), "lknas.ops.peripheral"),
    **dict.fromkeys(("DILATED_BRANCHES",), "lknas.ops.kernel_rules"),
    **dict.fromkeys(("LARGE_KERNEL_MODULES", "DEPLOY_KERNEL_MODULES", "DWConvBN", "DenseLK", "StripeLK",
                     "PeripheralLK", "DilatedLK", "DeployDWConv", "DeployStripeConv", "PartialChannels",
                     "make_large_kernel", "n_mixed_channels"), "lknas.ops.large_kernel"),
    **dict.fromkeys(("GRN", "SE", "ConvBN", "fold_bn"), "lknas.ops.layers"),
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
