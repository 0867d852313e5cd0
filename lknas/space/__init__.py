"""The YAML search-space DSL: load a space file, validate it, sample `ArchConfig`s from it.

    space = load_space("pelk_space.yaml")      # a path, or the name of a bundled space
    arch = space.sample(seed=0)                # seeded, reproducible
    arch = space.suggest(trial)                # Optuna define-by-run
    arch = load_arch("results/run/archs/x.yaml")  # a domain-free file -> ArchConfig
"""
from lknas.space.configs import Constraints, Objective, SearchConfig, TrainConfig
from lknas.space.domains import Choice, Constant, Domain, FloatRange, IntRange, parse_domain
from lknas.space.loader import bundled_dir, bundled_spaces, load_arch, load_space, read_yaml, resolve_space_path
from lknas.space.resolve import Dimension
from lknas.space.schema import parse_space
from lknas.space.space import SearchSpace

__all__ = [
    "Choice", "Constant", "Constraints", "Dimension", "Domain", "FloatRange", "IntRange", "Objective",
    "SearchConfig", "SearchSpace", "TrainConfig", "bundled_dir", "bundled_spaces", "load_arch", "load_space",
    "parse_domain", "parse_space", "read_yaml", "resolve_space_path",
]
