"""Ray's redundant hints are dropped on our commands and kept with --verbose."""
from __future__ import annotations

import logging

import pytest

from lknas.ray_messages import DROPPED, filter_ray_hints


def _remove_filters():
    for name, _ in DROPPED:
        logger = logging.getLogger(name)
        for f in [f for f in logger.filters if getattr(f, "name", "") == "lknas-drop"]:
            logger.removeFilter(f)


@pytest.fixture
def clean_loggers():
    _remove_filters()  # an in-process `main([...])` of another test may have installed them
    yield
    _remove_filters()


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _emitted(logger_name: str, message: str | None = None, call=None) -> list[str]:
    """What reaches a handler of `logger_name` (Ray's loggers do not propagate to pytest's)."""
    logger, handler = logging.getLogger(logger_name), _Collect()
    logger.addHandler(handler)
    try:
        call() if call else logger.warning(message)
    finally:
        logger.removeHandler(handler)
    return handler.messages


def test_rays_token_warning_and_restore_hint_are_dropped_other_warnings_kept(clean_loggers):
    from ray._private.authentication import authentication_token_setup as auth

    restore = "Experiment has been interrupted, but the most recent state was saved.\nResume experiment with: X"
    assert _emitted(auth.logger.name, call=auth._warn_token_auth_enabled)  # Ray's own call, as ray.init makes it
    assert _emitted("ray.tune.tune", restore)
    filter_ray_hints()
    filter_ray_hints()  # idempotent
    assert _emitted(auth.logger.name, call=auth._warn_token_auth_enabled) == []
    assert _emitted("ray.tune.tune", restore) == []
    assert _emitted("ray.tune.tune", "some other warning") == ["some other warning"]  # only those are dropped


def test_verbose_is_a_flag_of_the_commands_that_start_ray():
    from lknas.cli import build_parser

    parser = build_parser()
    for command in ("search", "scale", "fidelity"):
        flag = "--experiment" if command == "scale" else "--space"
        assert parser.parse_args([command, "--verbose", flag, "x.yaml"]).verbose
