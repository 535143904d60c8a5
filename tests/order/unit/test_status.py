"""The order status machine: only the transitions of DESIGN.md §3."""

from __future__ import annotations

import pytest

from order.model.order import OrderStatus as S
from order.model.order import PaymentOutcome
from order.model.status import (
    CANCELLABLE,
    CUSTOMER_CANCELLABLE,
    can_transition,
    cancellable_by,
    payment_target,
    sources_of,
)

pytestmark = pytest.mark.unit

ALLOWED = {
    (S.PENDING_PAYMENT, S.CONFIRMED),
    (S.PENDING_PAYMENT, S.AWAITING_SHIPMENT),
    (S.PENDING_PAYMENT, S.PAYMENT_FAILED),
    (S.PENDING_PAYMENT, S.CANCELLED),
    (S.CONFIRMED, S.PACKED),
    (S.CONFIRMED, S.CANCELLED),
    (S.AWAITING_SHIPMENT, S.PACKED),
    (S.AWAITING_SHIPMENT, S.CANCELLED),
    (S.PACKED, S.SHIPPED),
    (S.PACKED, S.CANCELLED),
    (S.SHIPPED, S.DELIVERED),
}


@pytest.mark.parametrize("current", list(S))
@pytest.mark.parametrize("target", list(S))
def test_exactly_the_designed_transitions_are_allowed(current: S, target: S) -> None:
    assert can_transition(current, target) == ((current, target) in ALLOWED)


@pytest.mark.parametrize("final", [S.DELIVERED, S.CANCELLED, S.PAYMENT_FAILED])
def test_final_statuses_go_nowhere(final: S) -> None:
    assert not any(can_transition(final, t) for t in S)


def test_sources_feed_the_conditional_update() -> None:
    assert sources_of(S.PACKED) == {S.CONFIRMED, S.AWAITING_SHIPMENT}
    assert sources_of(S.SHIPPED) == {S.PACKED}
    assert sources_of(S.DELIVERED) == {S.SHIPPED}
    assert sources_of(S.CANCELLED) == CANCELLABLE == {S.PENDING_PAYMENT, S.CONFIRMED, S.AWAITING_SHIPMENT, S.PACKED}
    assert sources_of(S.PENDING_PAYMENT) == frozenset()


def test_a_customer_cancels_before_packed_a_privileged_caller_before_shipped() -> None:
    assert cancellable_by(privileged=False) == CUSTOMER_CANCELLABLE
    assert {S.PENDING_PAYMENT, S.CONFIRMED, S.AWAITING_SHIPMENT} == CUSTOMER_CANCELLABLE
    assert cancellable_by(privileged=True) == CANCELLABLE == CUSTOMER_CANCELLABLE | {S.PACKED}
    for privileged in (False, True):
        assert not cancellable_by(privileged=privileged) & {S.SHIPPED, S.DELIVERED, S.CANCELLED, S.PAYMENT_FAILED}


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (PaymentOutcome.CAPTURED, S.CONFIRMED),
        (PaymentOutcome.CASH_ON_DELIVERY, S.AWAITING_SHIPMENT),
        (PaymentOutcome.FAILED, S.PAYMENT_FAILED),
    ],
)
def test_payment_outcomes_map_to_statuses_reachable_from_pending(outcome: PaymentOutcome, status: S) -> None:
    assert payment_target(outcome) == status
    assert can_transition(S.PENDING_PAYMENT, status)
