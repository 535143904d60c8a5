"""Page tokens round-trip and refuse forgeries; payment event envelopes are parsed defensively."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest

from infra.errors import InvalidArgument
from order.biz.apply_payment_event import PaymentEvent
from order.biz.list_orders import decode_page_token, encode_page_token
from order.biz.ports import PageCursor

pytestmark = pytest.mark.unit


def test_page_token_round_trips_with_microseconds() -> None:
    cursor = PageCursor(datetime(2025, 3, 1, 12, 30, 5, 123456, tzinfo=UTC), str(uuid.uuid4()))
    assert decode_page_token(encode_page_token(cursor)) == cursor


@pytest.mark.parametrize(
    "token",
    [
        "garbage!!",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(b'{"c": "2025-01-01T00:00:00+00:00"}').decode(),
        base64.urlsafe_b64encode(b'{"c": "2025-01-01T00:00:00+00:00", "i": "nope"}').decode(),
        base64.urlsafe_b64encode(b'{"c": "2025-01-01T00:00:00", "i": "4b555ae2-0f60-4d26-99ab-dad4d55eafe0"}').decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
    ],
)
def test_malformed_page_tokens_name_the_field(token: str) -> None:
    with pytest.raises(InvalidArgument) as exc_info:
        decode_page_token(token)
    assert exc_info.value.field == "page_token"


def test_payment_event_envelope_is_parsed() -> None:
    event = PaymentEvent.from_envelope(
        {"event_id": "e1", "event_type": "PaymentCaptured", "data": {"order_ref": "sess-1", "payment_id": "p1"}}
    )
    assert event == PaymentEvent("e1", "PaymentCaptured", {"order_ref": "sess-1", "payment_id": "p1"})


@pytest.mark.parametrize(
    "envelope",
    [
        None,
        [],
        {"event_type": "PaymentCaptured", "data": {}},
        {"event_id": "e1", "event_type": "PaymentAuthorized", "data": {}},
        {"event_id": "e1", "event_type": "PaymentCaptured", "data": "x"},
    ],
)
def test_unusable_envelopes_are_rejected(envelope: object) -> None:
    assert PaymentEvent.from_envelope(envelope) is None
