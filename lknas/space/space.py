"""`SearchSpace`: a validated space file that samples `ArchConfig`s (seeded or via Optuna)."""
from __future__ import annotations

import dataclasses
import math
import random
from typing import TYPE_CHECKING, Any

from lknas.arch import ArchConfig
from lknas.errors import NotOneArchitecture, Problem, SpaceError
from lknas.space.configs import Constraints, SearchConfig, TrainConfig
from lknas.space.budget import check_budget
from lknas.space.checks import check_search, grid_problem
from lknas.space.domains import Choice, Domain
from lknas.space.resolve import Dimension, Template, dimensions, resolve

if TYPE_CHECKING:  # Optuna is imported by the search, not to validate a space
    from optuna.trial import BaseTrial


class SearchSpace:
    """A parsed, validated space. Build one with `load_space` or `parse_space`.

    `dimensions` lists the searched keys by parameter name (`kernel_type`, `stages[1].kernel`,
    `sparsity.density`, `train.lr`); conditional ones are only asked when the keys that switch
    them on came out that way.
    """

    def __init__(self, *, file: str, name: str, description: str, template: Template, train: TrainConfig,
                 search: SearchConfig, constraints: Constraints, raw: dict[str, Any]):
        self.file = file
        self.name = name
        self.description = description
        self.template = template
        self.train = train
        self.search = search
        self.constraints = constraints
        self.raw = raw
        self.dimensions: list[Dimension] = dimensions(template)

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, {len(self.dimensions)} dimensions, file={self.file!r})"

    # ----------------------------------------------------------------- architectures
    def sample(self, seed: int) -> ArchConfig:
        """A random architecture; the same seed always gives the same one."""
        rng = random.Random(seed)
        return resolve(self.template, lambda name, dom: dom.sample(rng), _normalize)

    def suggest(self, trial: BaseTrial) -> ArchConfig:
        """Define-by-run: ask `trial` for every active dimension, in a fixed order."""
        return resolve(self.template, lambda name, dom: dom.suggest(trial, name), _normalize)

    @property
    def is_fixed(self) -> bool:
        """True when nothing is searched (no domain anywhere)."""
        return not self.dimensions

    def fixed(self) -> ArchConfig:
        """The one architecture of a domain-free space; SpaceError naming the domains otherwise."""
        if self.dimensions:
            names = [d.name for d in self.dimensions]
            shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            where = self.file or "this file"
            raise NotOneArchitecture(
                [Problem(self.file, d.name, f"is a domain ({d.domain})") for d in self.dimensions],
                f"{where} is a search space ({len(names)} searched dimensions: {shown}), and this command needs "
                f"one architecture: sample one first (`python -m lknas sample {where} --seed 0 --out arch.yaml`), "
                f"or give a search result (results/RUN/archs/*.yaml)")
        return resolve(self.template, _no_pick, _normalize)

    # ----------------------------------------------------------------- training settings
    def sample_train(self, seed: int) -> TrainConfig:
        """TrainConfig with searched `lr` / `weight_decay` drawn from a seeded rng."""
        rng = random.Random(f"train:{seed}")
        return self._train({k: d.sample(rng) for k, d in self.template.train.items()})

    def suggest_train(self, trial: BaseTrial) -> TrainConfig:
        """TrainConfig with searched `lr` / `weight_decay` asked of `trial` (`train.lr`, ...)."""
        return self._train({k: d.suggest(trial, f"train.{k}") for k, d in self.template.train.items()})

    def _train(self, values: dict[str, Any]) -> TrainConfig:
        return dataclasses.replace(self.train, **{k: float(v) for k, v in values.items()})

    # ----------------------------------------------------------------- description
    def size(self) -> tuple[int, int]:
        """(product of the finite domains' sizes, number of continuous dimensions).

        Conditional dimensions count fully, so the product is an upper bound."""
        finite, continuous = 1, 0
        for d in self.dimensions:
            n = d.domain.size()
            if n is None:
                continuous += 1
            else:
                finite *= n
        return finite, continuous

    def grid(self) -> dict[str, list[Any]]:
        """Every dimension's values as Optuna sees them, e.g. for `optuna.samplers.GridSampler`.

        Raises:
            SpaceError: a dimension is continuous, or the grid has more than `MAX_GRID`
                combinations (counted before any list is built).
        """
        problem = grid_problem(self.dimensions)
        if problem:
            raise SpaceError([Problem(self.file, "search.sampler", problem)])
        return {d.name: d.domain.labels() if isinstance(d.domain, Choice) else d.domain.values()
                for d in self.dimensions}

    def check_run(self, search: SearchConfig, train: TrainConfig) -> None:
        """Check settings that may differ from the file's (command-line overrides) before a run
        starts: the sampler must suit the space (grid size, cmaes objectives) and the largest
        model must fit the memory budget at `train`'s resolution and batch size.

        Raises:
            SpaceError: listing every problem found.
        """
        issues: list[tuple[str, str]] = []
        check_search(self.template, search, issues)
        check_budget(self.template, train.resolution, train.batch_size, train.num_classes, issues)
        if issues:
            raise SpaceError([Problem(self.file, path, msg) for path, msg in issues])

    def warnings(self) -> list[Problem]:
        """Choices that do nothing at the proxy resolution, constraints that never bind (see
        `lknas.space.advice`); a valid space may have some, and a run goes on."""
        from lknas.space.advice import space_warnings

        return space_warnings(self)

    def summary(self) -> str:
        """Several lines: name, dimension counts, rough size, one line per dimension."""
        finite, continuous = self.size()
        n_cond = sum(d.conditional for d in self.dimensions)
        size = f"{finite:,} combinations" + (f" (~10^{math.log10(finite):.1f})" if finite > 1000 else "")
        if continuous:
            size += f" x continuous ({continuous} float dimension{'s' if continuous != 1 else ''})"
        if n_cond:
            size += "; an upper bound (conditional dimensions counted fully)"
        lines = [
            f"search space '{self.name}' ({self.file})",
            f"  {len(self.template.stages)} stages, {len(self.dimensions)} dimensions ({n_cond} conditional)",
            f"  size: {size}",
        ]
        width = max((len(d.name) for d in self.dimensions), default=0)
        for d in self.dimensions:
            tag = "  [conditional]" if d.conditional else ""
            lines.append(f"    {d.name:<{width}}  {d.domain}{tag}")
        return "\n".join(lines)


def _normalize(key: str, value: Any) -> Any:
    from lknas.space.schema import normalize_value

    return normalize_value(key, value)


def _no_pick(name: str, dom: Domain) -> Any:
    raise AssertionError(f"fixed space asked for {name}")
