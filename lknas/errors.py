"""User-facing errors: each names the file, the key path and what would be valid."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file, e.g. `stages[2].kernel.choice[1]`: must be odd."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        key = f"{self.path}: " if self.path else ""
        return f"{where}{key}{self.message}"


class LknasError(Exception):
    """Base class of errors the CLI reports without a traceback (exit code 2)."""


class SpaceError(LknasError, ValueError):
    """A search-space or architecture file is invalid; carries every problem found at once."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__(self._format())

    def _format(self) -> str:
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in search space"
        return head + ":\n" + "\n".join(f"  - {p}" for p in self.problems)


class NotOneArchitecture(SpaceError):
    """A search space given where one architecture is expected: one line for the user, and
    `problems` naming each searched dimension for code."""

    def __init__(self, problems: list[Problem], message: str):
        self.message = message
        super().__init__(problems)

    def _format(self) -> str:
        return self.message
