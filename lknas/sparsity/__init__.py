"""Dynamic sparsity (SLaK): which weights are masked, their initial layer-wise densities (uniform,
ERK, SNIP) and the masks' prune/regrow schedule during training (`DynamicSparsity`)."""
from lknas.sparsity.density import erk_densities, layer_densities, named_sparse_parameters
from lknas.sparsity.dynamic import DynamicSparsity, prune_fraction
from lknas.sparsity.targets import deploy_sparse_modules, sparse_parameters

__all__ = [
    "DynamicSparsity",
    "layer_densities",
    "erk_densities",
    "prune_fraction",
    "named_sparse_parameters",
    "sparse_parameters",
    "deploy_sparse_modules",
]
