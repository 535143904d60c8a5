"""The reason a compensation carries quotes its error as one short line other services accept."""

from __future__ import annotations

import pytest

from checkout.biz.checkout.confirm import described
from kernel.errors import Unavailable
from kernel.validation import check_text

pytestmark = pytest.mark.unit


def test_a_driver_error_becomes_one_short_line() -> None:
    # What psycopg raised when chaos terminated a Postgres backend: several lines, quoting its SQL.
    exc = RuntimeError(
        "(psycopg.errors.AdminShutdown) terminating connection due to administrator command\n"
        "[SQL: UPDATE checkout.checkout_sessions SET saga_step=%(b_saga_step)s::VARCHAR " + "x" * 2000 + "]"
    )
    reason = f"checkout failed: {described(exc)}"
    assert "\n" not in reason
    assert reason.startswith("checkout failed: (psycopg.errors.AdminShutdown) terminating connection")
    assert len(reason) <= 200
    assert check_text("reason", reason, max_length=255) == reason  # what payment's VoidAuthorization checks


def test_a_domain_error_keeps_its_own_message() -> None:
    assert described(Unavailable("the provider did not answer")) == "the provider did not answer"
    assert described(RuntimeError()) == "RuntimeError"
