"""Admission control: new work is refused first, everything at the hard limit, nothing without a limit."""

from __future__ import annotations

import pytest

from infra.admission import Admission, AdmissionPolicy

pytestmark = pytest.mark.unit

NEW = "/kassa.checkout.v1.CartService/CreateCart"
OTHER = "/kassa.checkout.v1.CheckoutService/ConfirmCheckout"


def test_new_work_is_refused_at_the_limit_and_other_calls_at_the_hard_limit() -> None:
    gate = Admission(AdmissionPolicy(limit=2, new_work=frozenset({NEW}), hard_factor=2))
    assert gate.admit(NEW) and gate.admit(NEW)
    assert not gate.admit(NEW)  # 2 in flight: no new cart
    assert gate.admit(OTHER) and gate.admit(OTHER)  # a checkout under way still gets through, up to 4
    assert not gate.admit(OTHER)
    assert (gate.in_flight, gate.refused) == (4, 2)

    gate.done()
    gate.done()
    gate.done()
    assert gate.in_flight == 1
    assert gate.admit(NEW)  # room again


def test_no_limit_admits_everything_and_still_counts() -> None:
    gate = Admission(AdmissionPolicy())
    assert all(gate.admit(NEW) for _ in range(1000))
    assert (gate.in_flight, gate.refused) == (1000, 0)
