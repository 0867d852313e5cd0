"""SLaK-style dynamic sparsity: masks, magnitude pruning and regrowth during training.

Usage (call `step()` after every optimizer step, also when an AMP `GradScaler` skipped it)::

    sparsity = DynamicSparsity(model, spec, total_steps=N, optimizer=opt)
    for x, y in loader:
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()          # or scaler.step(optimizer); scaler.update()
        sparsity.step()           # masks re-applied; prune + regrow every spec.update_interval steps
        optimizer.zero_grad()

What SLaK's method is and where this differs from its reference code:
- masks on the weights named by `spec.targets` (`lknas.sparsity.targets`), each shared tensor once;
- initial layer densities uniform, ERK or SNIP, as in SLaK: SNIP only sets each layer's density
  and the mask is drawn at random (`snip_mask: topk` keeps the top-k weights instead); a layer at
  >= 0.99 density is made dense and never pruned;
- each layer keeps exactly its number of weights through every prune/regrow cycle (SLaK draws
  Bernoulli masks, which only match it in expectation);
- masks re-applied after every step, also when the optimizer step was skipped by a GradScaler
  (SLaK's code only masks in its non-AMP branch);
- optimizer state (any per-weight tensor: Adam's moments, SGD momentum) is kept at zero at masked
  positions and reset at regrown ones, so pruned weights are not brought back by stale momentum.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lknas.arch import SparsitySpec
from lknas.sparsity.density import (
    DENSE_FROM, check_spec, initial_counts, named_sparse_parameters, snip_masks, snip_scores,
)

__all__ = ["DynamicSparsity", "prune_fraction"]

_WEIGHT = "<weight>"  # the parameter itself among its optimizer state tensors


def prune_fraction(prune_rate: float, step: int, total_steps: int) -> float:
    """SLaK's cosine-decayed prune rate: prune_rate * (1 + cos(pi * step / total_steps)) / 2,
    0 from `total_steps` on."""
    t = min(max(step, 0), total_steps) / max(total_steps, 1)
    return prune_rate * (1.0 + math.cos(math.pi * t)) / 2.0


class DynamicSparsity:
    """Masks the sparse weights of `model` per `spec` (None: `model.arch.sparsity`) and updates
    them over `total_steps` training steps (the prune rate decays to 0 by then; no updates after).

    `optimizer`: its per-weight state is cleared where weights are masked (may be None).
    `snip_batch`: an (inputs, targets) batch for `spec.init == 'snip'`, scored with `loss_fn`
    (default cross-entropy); without one ERK is used, with a warning.
    `seed`: for the random initial masks and random regrowth (default: drawn from torch's global
    generator, so a seeded run is reproducible).

    Raises:
        ValueError: a setting of `spec` out of range or unknown (the message names the key).
    """

    def __init__(
        self,
        model: nn.Module,
        spec: SparsitySpec | None,
        total_steps: int,
        optimizer: torch.optim.Optimizer | None = None,
        snip_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        seed: int | None = None,
    ):
        spec = spec if spec is not None else getattr(getattr(model, "arch", None), "sparsity", None)
        if spec is None:
            raise ValueError("no SparsitySpec given and the model's arch has none")
        check_spec(spec)
        if spec.growth not in ("random", "gradient"):
            raise ValueError(f"sparsity growth must be 'random' or 'gradient', got {spec.growth!r}")
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if spec.update_interval < 1:
            raise ValueError(f"update_interval must be >= 1, got {spec.update_interval}")
        if not 0.0 <= spec.prune_rate <= 1.0:
            raise ValueError(f"prune_rate must be in [0, 1], got {spec.prune_rate}")
        self.model, self.spec, self.optimizer = model, spec, optimizer
        self.total_steps = int(total_steps)
        self.steps = 0
        self._pending = False  # an update postponed because gradients were not finite
        self.last_update: dict[str, Any] | None = None  # step, fraction, moved per layer (for logs)
        self._warned_no_grad = False
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        self.generator = torch.Generator().manual_seed(seed)

        self.params: dict[str, nn.Parameter] = named_sparse_parameters(model, spec.targets)
        self.masks: dict[str, torch.Tensor] = {}
        self._off: dict[str, torch.Tensor] = {}  # ~mask, cached for the per-step re-masking
        for n, m in self._initial_masks(snip_batch, loss_fn).items():
            self._set_mask(n, m)
        self.n_active: dict[str, int] = {n: int(m.sum()) for n, m in self.masks.items()}
        # what the initial masking overwrites, kept until the first step(): a checkpoint's weights
        # loaded *before* this object was built survive `load_state_dict` (see there)
        self._unmasked: dict[str, dict[str, torch.Tensor]] | None = {
            n: {k: t.detach().clone() for k, t in self._tensors(p).items()} for n, p in self.params.items()
        }
        self.apply_masks()

    # ------------------------------------------------------------------ initial masks
    def _initial_masks(self, snip_batch, loss_fn) -> dict[str, torch.Tensor]:
        spec, scores = self.spec, None
        if spec.init == "snip" and snip_batch is not None:
            scores = snip_scores(self.model, self.params, snip_batch, loss_fn)
        elif spec.init == "snip":
            warnings.warn("SNIP initialization needs snip_batch=(inputs, targets); using ERK", stacklevel=3)
            spec = dataclasses.replace(spec, init="erk")
        if scores is not None and spec.snip_mask == "topk":
            masks = snip_masks(scores, spec.density)
            return {n: (m if m.sum() < DENSE_FROM * m.numel() else torch.ones_like(m)).to(self.params[n].device)
                    for n, m in masks.items()}
        counts = initial_counts({n: p.shape for n, p in self.params.items()}, spec, scores)
        masks = {}
        for n, p in self.params.items():
            draw = torch.rand(p.numel(), generator=self.generator)
            flat = torch.zeros(p.numel(), dtype=torch.bool)
            flat[torch.topk(draw, counts[n], sorted=False).indices] = True
            masks[n] = flat.view(p.shape).to(p.device)
        return masks

    # ------------------------------------------------------------------ training hooks
    @torch.no_grad()
    def apply_masks(self) -> None:
        """Zero the masked weights and their optimizer state."""
        for n, p in self.params.items():
            off = self._off[n]
            p.masked_fill_(off, 0.0)
            for state in self._states(p):
                state.masked_fill_(off, 0.0)

    def step(self) -> None:
        """Call after every optimizer step (skipped or not): re-applies the masks and, every
        `update_interval` steps, prunes and regrows."""
        self.steps += 1
        self._unmasked = None
        self.apply_masks()
        if (self.steps % self.spec.update_interval == 0 or self._pending) and self.steps < self.total_steps:
            if self.spec.growth == "gradient" and not self._grads_finite():
                self._pending = True  # AMP overflow step: grow from the next finite gradients
                return
            self._pending = False
            fraction = prune_fraction(self.spec.prune_rate, self.steps, self.total_steps)
            moved = self.update(fraction)
            self.last_update = {"step": self.steps, "fraction": fraction, "moved": moved}

    @torch.no_grad()
    def update(self, fraction: float) -> dict[str, int]:
        """Prune `fraction` of each layer's active weights (smallest magnitude) and regrow as many
        at masked positions (random or largest |grad|), the regrown weights at zero. Returns the
        number of weights moved per layer."""
        moved = {}
        self._unmasked = None
        for n, p in self.params.items():
            n_active, numel = self.n_active[n], p.numel()
            k = math.ceil(fraction * n_active - 1e-9)
            if k <= 0 or n_active >= numel:
                moved[n] = 0
                continue
            flat_mask = self.masks[n].flatten().clone()
            magnitude = p.detach().abs().flatten().float().masked_fill(~flat_mask, math.inf)
            drop = torch.topk(magnitude, k, largest=False, sorted=False).indices
            flat_mask[drop] = False
            scores = self._growth_scores(n, p).masked_fill(flat_mask, -math.inf)  # only masked positions
            grow = torch.topk(scores, k, sorted=False).indices
            flat_mask[grow] = True
            changed = torch.zeros_like(flat_mask)
            changed[drop] = True
            changed[grow] = True
            changed = changed.view(p.shape)
            self._set_mask(n, flat_mask.view(p.shape))
            p.masked_fill_(changed, 0.0)  # pruned and regrown weights (the latter start at zero)
            for state in self._states(p):
                state.masked_fill_(changed, 0.0)
            moved[n] = k
        self.apply_masks()
        return moved

    def _set_mask(self, name: str, mask: torch.Tensor) -> None:
        self.masks[name] = mask
        self._off[name] = ~mask

    def _growth_scores(self, name: str, p: nn.Parameter) -> torch.Tensor:
        if self.spec.growth == "gradient":
            if p.grad is not None:
                return p.grad.detach().abs().flatten().float().nan_to_num(nan=0.0, posinf=0.0)
            if not self._warned_no_grad:
                warnings.warn(
                    "gradient growth found no .grad (call sparsity.step() before zero_grad()); "
                    "growing at random instead",
                    stacklevel=4,
                )
                self._warned_no_grad = True
        return torch.rand(p.numel(), generator=self.generator).to(p.device)

    def _grads_finite(self) -> bool:
        flags = [torch.isfinite(p.grad).all() for p in self.params.values() if p.grad is not None]
        return not flags or bool(torch.stack([f.to(flags[0].device) for f in flags]).all())

    def _states(self, p: nn.Parameter) -> list[torch.Tensor]:
        """The optimizer's per-weight state tensors of `p` (moments, momentum buffers)."""
        return [t for k, t in self._tensors(p).items() if k != _WEIGHT]

    def _tensors(self, p: nn.Parameter) -> dict[str, torch.Tensor]:
        """`p` itself (key `_WEIGHT`) and the optimizer's state tensors of its shape, by key."""
        out: dict[str, torch.Tensor] = {_WEIGHT: p}
        if self.optimizer is not None:
            for k, v in self.optimizer.state.get(p, {}).items():
                if torch.is_tensor(v) and v.shape == p.shape:
                    out[str(k)] = v
        return out

    # ------------------------------------------------------------------ inspection
    def densities(self) -> dict[str, float]:
        """Measured density of each masked weight: its mask's kept fraction (right after an update
        the regrown weights are still exactly zero; they count as kept)."""
        return {n: float(m.sum()) / m.numel() for n, m in self.masks.items()}

    def density(self) -> float:
        """Kept fraction over all masked weights together."""
        return sum(self.n_active.values()) / max(1, sum(m.numel() for m in self.masks.values()))

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "pending": self._pending,
            "masks": {n: m.detach().cpu().clone() for n, m in self.masks.items()},
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore masks, step counter and generator, and apply the masks.

        Load the model's and optimizer's checkpoints before or after building this object, either
        works: before the first `step()`, weights (and optimizer state) that still hold exactly what
        the initial masking left are first given back their values from before it."""
        masks = state["masks"]
        if set(masks) != set(self.params):
            missing, extra = sorted(set(self.params) - set(masks)), sorted(set(masks) - set(self.params))
            raise ValueError(f"sparsity state does not match the model: missing {missing}, unexpected {extra}")
        for n, m in masks.items():
            shape = tuple(self.params[n].shape)
            if tuple(m.shape) != shape:
                raise ValueError(f"sparsity mask {n} has shape {tuple(m.shape)}, the weight {shape}")
        self._undo_initial_masking()
        for n, m in masks.items():
            self._set_mask(n, m.to(device=self.params[n].device, dtype=torch.bool).clone())
        self.n_active = {n: int(m.sum()) for n, m in self.masks.items()}
        self.steps = int(state["steps"])
        self._pending = bool(state.get("pending", False))
        if "generator" in state:
            self.generator.set_state(state["generator"])
        self.apply_masks()

    @torch.no_grad()
    def _undo_initial_masking(self) -> None:
        if self._unmasked is None:
            return
        for n, p in self.params.items():
            off = ~self.masks[n]  # still the initial masks: no step() or update() yet
            now = self._tensors(p)
            for key, before in self._unmasked[n].items():
                t = now.get(key)
                if t is not None and torch.equal(t, before.masked_fill(off, 0.0)):
                    t.copy_(before)
        self._unmasked = None

    def __repr__(self) -> str:
        s = self.spec
        return (
            f"DynamicSparsity({len(self.masks)} weights, density {self.density():.4f}, init {s.init}, "
            f"growth {s.growth}, every {s.update_interval} steps, step {self.steps}/{self.total_steps})"
        )
