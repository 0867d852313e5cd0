"""The size of a model before it is built: parameters exactly, training memory approximately.

`estimate(arch, resolution, batch_size)` counts the training form's parameters the way
`build_model` creates them (stem, downsample layers, blocks with their kernel branches and norms,
head; `tests/test_models_estimate.py` holds the count equal to the built model's) and estimates the
memory one training step needs:

- model state: weights, gradients and AdamW's two moments, 16 bytes a parameter;
- activations autograd keeps for the backward pass, fp32, from per-block coefficients in units of
  channels x pixels (`_block_activations`), calibrated on saved-tensor measurements of every block
  and kernel type (plus the expanded kernels of peripheral convolutions, once per step); it errs
  on the high side (up to 2x) on small maps, where `dwconv2d` keeps no workspace.

Only integer arithmetic on the `ArchConfig`: no tensor is allocated, so a space's largest model
can be checked against a memory budget (`lknas.space.budget`) before anything is built. The
stage-level functions take a `StageSpec`, so the space can also price stages it has not resolved.
"""
from __future__ import annotations

from dataclasses import dataclass

from lknas.arch import ArchConfig, KernelSpec, StageSpec
from lknas.ops.kernel_rules import DILATED_BRANCHES, resolved_kernel
from lknas.ops.peripheral import peripheral_k_prime

__all__ = ["Estimate", "estimate", "stem_cost", "stage_cost", "head_params", "STATE_BYTES_PER_PARAM",
           "ACTIVATION_BYTES"]

STATE_BYTES_PER_PARAM = 16  # fp32 weight, gradient and AdamW's two moments
ACTIVATION_BYTES = 4  # fp32 (AMP keeps some in 16 bits: the estimate stays an upper bound)
DOWNSAMPLE_STRIDE = {"patch": 2, "conv3": 2, "replk": 2, "none": 1}


@dataclass(frozen=True)
class Estimate:
    """Parameters and training memory (bytes) of one model at one resolution and batch size."""

    params: int
    activation_bytes: int
    resolution: int
    batch_size: int

    @property
    def state_bytes(self) -> int:
        return self.params * STATE_BYTES_PER_PARAM

    @property
    def total_bytes(self) -> int:
        return self.state_bytes + self.activation_bytes

    def describe(self) -> str:
        """'3.4G params (54.4 GB of weights, gradients and AdamW state) + 358 GB of activations at
        64x64, batch 64 = 412 GB'."""
        return (f"{_count(self.params)} params ({_gb(self.state_bytes)} of weights, gradients and AdamW state) + "
                f"{_gb(self.activation_bytes)} of activations at {self.resolution}x{self.resolution}, "
                f"batch {self.batch_size} = {_gb(self.total_bytes)}")


def _count(n: float) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(int(n))


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _down(size: int, stride: int) -> int:
    return -(-size // stride)


# ----------------------------------------------------------------------------- parameters
def _n_mixed(channels: int, partial: float) -> int:
    if partial >= 1.0:
        return channels
    return max(1, min(channels, round(channels * partial)))


def _mixer(kernel: KernelSpec, channels: int, k: int, *, bias: bool, norm: bool) -> tuple[int, int]:
    """(params, depthwise conv branches) of `make_large_kernel(kernel, channels, k, bias=, norm=)`."""
    n = _n_mixed(channels, kernel.partial)
    kind, reparam = resolved_kernel(kernel, k)
    small = (n * reparam * reparam + 2 * n, 1) if reparam else (0, 0)
    if kind == "dense":
        if reparam:
            return n * k * k + 2 * n + small[0], 1 + small[1]
        plain_norm = norm and not bias
        return n * k * k + (n if bias else 0) + (2 * n if plain_norm else 0), 1
    if kind == "stripe":
        s = kernel.stripe_n or 5
        return 2 * (n * k * s + 2 * n) + small[0], 2 + small[1]
    if kind == "peripheral":
        kp = peripheral_k_prime(k, 2 if kernel.r_c is None else kernel.r_c, kernel.m or 2)
        return n * kp * kp + 2 * n + small[0], 1 + small[1]
    if kind == "dilated":
        sizes = DILATED_BRANCHES[k][0]
        return n * k * k + 2 * n + sum(n * s * s + 2 * n for s in sizes), 1 + len(sizes)
    raise ValueError(f"unknown kernel type {kernel.type!r}")


def stem_cost(kind: str, in_chans: int, width: int, resolution: int) -> tuple[int, int, int]:
    """(params, activation elements per sample, output side) of `make_stem`."""
    half = _down(resolution, 2)
    if kind == "patch":
        side = resolution // 4
        return in_chans * width * 16 + 3 * width, in_chans * resolution ** 2 + 2 * width * side ** 2, side
    if kind == "replk":
        params = in_chans * width * 9 + 2 * width + 9 * width + 2 * width + width * width + 2 * width \
            + 9 * width + 2 * width
        side = _down(half, 2)
        return params, in_chans * resolution ** 2 + 9 * width * half ** 2 + 3 * width * side ** 2, side
    if kind == "unirep":
        h = max(1, width // 2)
        params = in_chans * h * 9 + h + 2 * h + h * width * 9 + width + 2 * width
        side = _down(half, 2)
        return params, in_chans * resolution ** 2 + 4 * h * half ** 2 + 3 * width * side ** 2, side
    raise ValueError(f"unknown stem type {kind!r}")


def _downsample(kind: str, cin: int, cout: int) -> int:
    if kind == "patch":
        return 2 * cin + cin * cout * 4 + cout
    if kind == "conv3":
        return cin * cout * 9 + cout + 2 * cout
    if kind == "replk":
        return cin * cout + 2 * cout + 9 * cout + 2 * cout
    if kind == "none":
        return 0 if cin == cout else cin * cout + cout
    raise ValueError(f"unknown downsample type {kind!r}")


def _block(spec: StageSpec, k: int, plain_dense: bool) -> tuple[int, int]:
    """(params, activation elements per pixel) of one block of `spec` (a replk block counts its
    ConvFFN too) at kernel size `k`."""
    c, kernel = spec.width, spec.kernel
    hidden = int(c * spec.mlp_ratio)
    if spec.block == "replk":
        inner = int(c * (spec.dw_ratio or 1.0))
        mix, branches = _mixer(kernel, inner, k, bias=False, norm=True)
        lk_block = 2 * c + c * inner + 2 * inner + mix + inner * c + 2 * c
        ffn = 2 * c + c * hidden + 2 * hidden + hidden * c + 2 * c
        n = _n_mixed(inner, kernel.partial)
        return lk_block + ffn, 12 * c + 2 * inner + 3 * hidden + n * (6 + 2 * branches)
    n = _n_mixed(c, kernel.partial)
    grn = bool(spec.grn) if spec.block == "convnext" else (True if spec.grn is None else spec.grn)
    gamma = c if spec.layer_scale else 0
    acts = 6 * c + (2 + 2 * grn) * hidden
    if spec.block == "convnext":
        plain = plain_dense and kernel.type == "dense" and not kernel.reparam
        mix, branches = _mixer(kernel, c, k, bias=plain, norm=not plain)
        params = mix + 2 * c + c * hidden + hidden + 2 * hidden * grn + hidden * c + c + gamma
        return params, acts + n * (6 + 2 * branches)
    if spec.block == "unirep":
        mix, branches = _mixer(kernel, c, k, bias=False, norm=False)
        se = True if spec.se is None else spec.se
        s = max(1, c // 4)
        params = mix + 2 * c + (c * s + s + s * c + c) * se + c * hidden + hidden + 2 * hidden * grn \
            + hidden * c + 2 * c + gamma
        return params, acts + c * se + n * (6 + 2 * branches)
    raise ValueError(f"unknown block type {spec.block!r}")


def stage_cost(in_chs: int, spec: StageSpec, side: int, plain_dense: bool = True) -> tuple[int, int, int, int]:
    """(params, activation elements per sample, activation elements per step, output side) of one
    stage entered at `side` x `side` with `in_chs` channels. `plain_dense`: the network has no
    sparsity (ConvNeXt's plain dense kernels)."""
    stride = DOWNSAMPLE_STRIDE[spec.downsample]
    out = _down(side, stride) if spec.downsample != "patch" else side // 2
    params = _downsample(spec.downsample, in_chs, spec.width)
    acts = 0 if params == 0 else 2 * in_chs * side ** 2 + 3 * spec.width * out ** 2
    kernel, fixed = spec.kernel, 0
    lk_chs = int(spec.width * (spec.dw_ratio or 1.0)) if spec.block == "replk" else spec.width
    if kernel.type == "peripheral" and kernel.pos_embed:
        params += _n_mixed(lk_chs, kernel.partial) * kernel.max_size ** 2
    for i in range(spec.depth):
        k = kernel.size_of_block(i)
        p, a = _block(spec, k, plain_dense)
        params += p
        acts += a * out ** 2
        if kernel.type == "peripheral":  # the expanded k x k kernel is kept for the backward pass
            fixed += 2 * _n_mixed(lk_chs, kernel.partial) * k * k
    return params, acts, fixed, out


def head_params(norm: str, features: int, num_classes: int) -> int:
    """The head: its norm and the classifier."""
    fc = features * num_classes + num_classes if num_classes > 0 else 0
    return (2 * features if norm in ("ln", "bn") else 0) + fc


def estimate(arch: ArchConfig, resolution: int, batch_size: int = 1, *, num_classes: int = 1000,
             in_chans: int = 3) -> Estimate:
    """Parameters (exact) and training memory (approximate) of `build_model(arch, num_classes,
    in_chans)` trained at `resolution` with `batch_size`."""
    params, acts, side = stem_cost(arch.stem.type, in_chans, arch.stem.width, resolution)
    prev, plain, fixed = arch.stem.width, arch.sparsity is None, 0
    for spec in arch.stages:
        p, a, f, side = stage_cost(prev, spec, side, plain)
        params, acts, fixed, prev = params + p, acts + a, fixed + f, spec.width
    params += head_params(arch.head.norm, prev, num_classes)
    acts += 2 * prev * side ** 2
    return Estimate(params, (acts * batch_size + fixed) * ACTIVATION_BYTES, resolution, batch_size)
