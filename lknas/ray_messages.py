"""Ray's own hints that are wrong or redundant on lknas commands, filtered from its loggers.

- "Token authentication is enabled for this Ray cluster ..." (every local Ray start): the local
  cluster lknas starts needs no action; README's scale-out section covers the token for clusters.
- "Resume experiment with: Tuner.restore(...)" (Ctrl-C): lknas prints its own `--resume` line.

`--verbose` on search, scale and fidelity keeps them.
"""
from __future__ import annotations

import logging

DROPPED = (
    ("ray._private.authentication.authentication_token_setup", "Token authentication is enabled for this Ray cluster"),
    ("ray.tune.tune", "Resume experiment with:"),
    ("ray.tune.tune", "Resume training with:"),
)


class _Drop(logging.Filter):
    """Drops records whose message contains `text`."""

    def __init__(self, text: str):
        super().__init__(name="lknas-drop")
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def filter_ray_hints() -> None:
    """Install the filters (once per logger and text)."""
    for name, text in DROPPED:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Drop) and f.text == text for f in logger.filters):
            logger.addFilter(_Drop(text))
