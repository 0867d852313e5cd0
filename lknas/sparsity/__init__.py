"""Dynamic sparsity (SLaK): which weights are masked. Mask training arrives with the trainer."""
from lknas.sparsity.targets import deploy_sparse_modules, sparse_parameters

__all__ = ["sparse_parameters", "deploy_sparse_modules"]
