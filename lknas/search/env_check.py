"""The LKNAS_* settings every search trial reads, checked once in the driver before anything
starts: a bad value is a user error naming the variable (exit 2), not an exception in every trial
(`LKNAS_DWCONV=bogus` had run a whole search whose every trial failed)."""
from __future__ import annotations

from lknas.errors import LknasError


def check_environment() -> None:
    """Read LKNAS_DWCONV, LKNAS_DWCONV_MAX_WORKSPACE_MB, LKNAS_LAYOUT and LKNAS_STRIPE_FORM as the
    trials will.

    Raises:
        LknasError: one of them holds a value its reader refuses (the message names it and the
            values it takes).
    """
    from lknas.measure.layout import layout_setting
    from lknas.ops.dwconv_select import forced_algorithm, workspace_limit
    from lknas.ops.stripe_form import forced_form

    for read in (lambda: forced_algorithm(None), workspace_limit, lambda: layout_setting(None), forced_form):
        try:
            read()
        except ValueError as err:
            raise LknasError(f"environment: {err}") from None
