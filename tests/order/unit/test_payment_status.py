"""An order's payment status only moves forward, and every value has its proto twin."""

from __future__ import annotations

import pytest

from kassa.payment.v1 import payment_pb2
from kernel.money import Money
from order.model.order import CASH_ON_DELIVERY_METHOD, NewOrder, OrderLine, PaymentStatus, Totals
from order.model.payment_status import FOLLOWS, payment_sources_of, records

pytestmark = pytest.mark.unit

P = PaymentStatus


@pytest.mark.parametrize(
    ("current", "reported"),
    [
        (P.UNSPECIFIED, P.AUTHORIZED),
        (P.UNSPECIFIED, P.CAPTURED),  # the order was created after the authorization's event
        (P.REQUIRES_ACTION, P.AUTHORIZED),
        (P.AUTHORIZED, P.CAPTURED),
        (P.AUTHORIZED, P.VOIDED),
        (P.CAPTURED, P.PARTIALLY_REFUNDED),
        (P.CAPTURED, P.REFUNDED),
        (P.PARTIALLY_REFUNDED, P.PARTIALLY_REFUNDED),  # a second partial refund
        (P.PARTIALLY_REFUNDED, P.REFUNDED),
        (P.CASH_ON_DELIVERY, P.VOIDED),
    ],
)
def test_forward_reports_are_recorded(current: PaymentStatus, reported: PaymentStatus) -> None:
    assert records(current, reported)
    assert current in payment_sources_of(reported)


@pytest.mark.parametrize(
    ("current", "reported"),
    [
        (P.CAPTURED, P.AUTHORIZED),  # a late PaymentAuthorized
        (P.CAPTURED, P.CAPTURED),
        (P.CAPTURED, P.VOIDED),
        (P.REFUNDED, P.PARTIALLY_REFUNDED),
        (P.REFUNDED, P.CAPTURED),
        (P.VOIDED, P.AUTHORIZED),
        (P.VOIDED, P.CAPTURED),
        (P.FAILED, P.AUTHORIZED),
        (P.AUTHORIZED, P.REQUIRES_ACTION),
        (P.AUTHORIZED, P.UNSPECIFIED),
    ],
)
def test_backward_or_repeated_reports_change_nothing(current: PaymentStatus, reported: PaymentStatus) -> None:
    assert not records(current, reported)
    assert current not in payment_sources_of(reported)


@pytest.mark.parametrize("final", [P.REFUNDED, P.VOIDED, P.DECLINED, P.FAILED])
def test_final_payment_statuses_go_nowhere(final: PaymentStatus) -> None:
    assert FOLLOWS[final] == frozenset()


def test_nothing_leads_back_to_unspecified() -> None:
    assert payment_sources_of(P.UNSPECIFIED) == frozenset()


def test_every_payment_status_is_a_proto_value() -> None:
    names = {name.removeprefix("PAYMENT_STATUS_") for name in payment_pb2.PaymentStatus.keys()}  # noqa: SIM118
    assert {p.value for p in PaymentStatus} == names


@pytest.mark.parametrize(
    ("method", "status"),
    [(CASH_ON_DELIVERY_METHOD, P.CASH_ON_DELIVERY), ("tok_visa", P.UNSPECIFIED), ("tok_threeDSecure", P.UNSPECIFIED)],
)
def test_only_cash_on_delivery_is_known_at_creation(method: str, status: PaymentStatus) -> None:
    usd = Money("USD", 100)
    new = NewOrder(
        checkout_session_id="sess-1",
        customer_id="cust-1",
        email="",
        lines=(OrderLine("apple", "Apple", 1, usd, usd, "w1", ""),),
        discounts=(),
        totals=Totals(usd, Money.zero("USD"), Money.zero("USD"), Money.zero("USD"), usd),
        shipping_address=None,
        billing_address=None,
        shipping_method="standard",
        payment_id="pay-1",
        payment_method=method,
        notes="",
        authorized_amount=usd,
    )
    assert new.initial_payment_status == status
