"""Page tokens round-trip and refuse forgeries; payment event payloads are parsed defensively."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest

from kernel.errors import InvalidArgument
from kernel.money import Money
from order.biz.apply_payment_event import PaymentEvent, PaymentEventType
from order.biz.list_orders import decode_page_token, encode_page_token
from order.biz.ports import PageCursor
from order.model.order import PaymentStatus

pytestmark = pytest.mark.unit


def test_page_token_round_trips_with_microseconds() -> None:
    cursor = PageCursor(datetime(2025, 3, 1, 12, 30, 5, 123456, tzinfo=UTC), str(uuid.uuid4()))
    assert decode_page_token(encode_page_token(cursor)) == cursor


@pytest.mark.parametrize(
    "token",
    [
        "garbage!!",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(b'{"at": "2025-01-01T00:00:00+00:00"}').decode(),
        base64.urlsafe_b64encode(b'{"at": "2025-01-01T00:00:00+00:00", "id": "nope"}').decode(),
        base64.urlsafe_b64encode(
            b'{"at": "2025-01-01T00:00:00", "id": "4b555ae2-0f60-4d26-99ab-dad4d55eafe0"}'
        ).decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        "A" * 201,
    ],
)
def test_malformed_page_tokens_name_the_field(token: str) -> None:
    with pytest.raises(InvalidArgument) as exc_info:
        decode_page_token(token)
    assert exc_info.value.field == "page_token"


def data(**extra: object) -> dict[str, object]:
    """A payment event payload as payment/model/payment.py:event_data writes it."""
    base: dict[str, object] = {
        "payment_id": "p1",
        "order_ref": "sess-1",
        "order_id": "",
        "status": "AUTHORIZED",
        "amount": {"currency_code": "USD", "amount_minor": 3000},
        "captured_minor": 0,
        "refunded_minor": 0,
    }
    return {**base, **extra}


def test_a_payment_event_payload_is_parsed() -> None:
    event = PaymentEvent.from_data("e1", "PaymentAuthorized", data())
    assert event == PaymentEvent(
        "e1", PaymentEventType.AUTHORIZED, "p1", "", "sess-1", PaymentStatus.AUTHORIZED, Money("USD", 3000)
    )
    assert event.cause == "payment authorized 30.00 USD"


@pytest.mark.parametrize(
    ("event_type", "payload", "status", "cause"),
    [
        (
            "PaymentCaptured",
            data(status="CAPTURED", captured_amount={"currency_code": "USD", "amount_minor": 3000}),
            PaymentStatus.CAPTURED,
            "payment captured 30.00 USD",
        ),
        (
            "PaymentCaptured",
            data(status="CAPTURED", captured_minor=2500),
            PaymentStatus.CAPTURED,
            "payment captured 25.00 USD",
        ),
        (
            "PaymentRefunded",
            data(status="PARTIALLY_REFUNDED", refund_amount={"currency_code": "USD", "amount_minor": 500}),
            PaymentStatus.PARTIALLY_REFUNDED,
            "payment refunded 5.00 USD (partial)",
        ),
        (
            "PaymentRefunded",
            data(status="REFUNDED", refund_amount={"currency_code": "USD", "amount_minor": 2500}),
            PaymentStatus.REFUNDED,
            "payment refunded 25.00 USD",
        ),
        ("PaymentVoided", data(status="VOIDED"), PaymentStatus.VOIDED, "payment voided"),
        (
            "PaymentVoided",
            data(status="VOIDED", reason="canceled at the provider"),
            PaymentStatus.VOIDED,
            "payment voided: canceled at the provider",
        ),
        (
            "PaymentFailed",
            data(status="FAILED", failure_code="card_declined"),
            PaymentStatus.FAILED,
            "payment failed: card_declined",
        ),
        # A status the event cannot report falls back to the event's own.
        ("PaymentCaptured", data(status="CAPTURING"), PaymentStatus.CAPTURED, "payment captured 0.00 USD"),
        ("PaymentVoided", data(status="CAPTURED"), PaymentStatus.VOIDED, "payment voided"),
    ],
)
def test_each_event_reports_its_payment_status_and_cause(
    event_type: str, payload: dict[str, object], status: PaymentStatus, cause: str
) -> None:
    event = PaymentEvent.from_data("e1", event_type, payload)
    assert event is not None
    assert (event.status, event.cause) == (status, cause)


@pytest.mark.parametrize(
    ("event_type", "payload"),
    [
        ("PaymentDeclined", data()),
        ("PaymentAuthorized", data(payment_id="")),
        ("PaymentAuthorized", data(payment_id=7)),
    ],
)
def test_unusable_events_are_rejected(event_type: str, payload: dict[str, object]) -> None:
    assert PaymentEvent.from_data("e1", event_type, payload) is None


def test_a_malformed_amount_is_left_out_of_the_cause() -> None:
    event = PaymentEvent.from_data(
        "e1", "PaymentAuthorized", data(amount={"currency_code": "USD", "amount_minor": "1"})
    )
    assert event is not None and event.amount is None and event.cause == "payment authorized"
