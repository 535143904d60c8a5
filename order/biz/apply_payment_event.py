"""Apply a payment service event (PaymentCaptured / PaymentFailed) to its order."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from infra.errors import FailedPrecondition, NotFound
from order.biz.ports import InboxClaim, OrderRepo
from order.biz.record_payment import RecordPayment
from order.model.order import PaymentOutcome

__all__ = ["CONSUMER", "EVENT_OUTCOMES", "ApplyPaymentEvent", "EventDisposition", "PaymentEvent"]

log = logging.getLogger("kassa.order.payments")

CONSUMER = "order-payments"
EVENT_OUTCOMES = {"PaymentCaptured": PaymentOutcome.CAPTURED, "PaymentFailed": PaymentOutcome.FAILED}


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    """The part of a payment event envelope this consumer needs."""

    event_id: str
    event_type: str
    data: dict[str, Any]

    @staticmethod
    def from_envelope(envelope: Any) -> PaymentEvent | None:
        """None for a message that is not a well-formed payment event envelope."""
        if not isinstance(envelope, dict):
            return None
        event_id, event_type, data = envelope.get("event_id"), envelope.get("event_type"), envelope.get("data")
        if not isinstance(event_id, str) or not event_id or event_type not in EVENT_OUTCOMES:
            return None
        if not isinstance(data, dict):
            return None
        return PaymentEvent(event_id=event_id, event_type=event_type, data=data)


class EventDisposition(StrEnum):
    """What the consumer did with an event; every disposition is acked."""

    APPLIED = "applied"
    NO_ORDER = "no_order"
    CONFLICT = "conflict"


class ApplyPaymentEvent:
    """Async payment methods (3-D Secure) complete after ConfirmCheckout returned. Invariant 5: the
    event's effect and its inbox claim commit together, so a redelivered (or republished) event is
    applied once; invariant 2 as in :class:`RecordPayment`."""

    def __init__(self, repo: OrderRepo, record_payment: RecordPayment) -> None:
        self._repo = repo
        self._record = record_payment

    async def __call__(self, event: PaymentEvent) -> EventDisposition:
        data = event.data
        order_id = str(data.get("order_id") or "")
        if not order_id:
            session_id = str(data.get("order_ref") or data.get("checkout_session_id") or "")
            order_id = (await self._repo.find_id_by_session(session_id) if session_id else None) or ""
        if not order_id:
            # Checkout records the outcome itself when it creates the order later.
            return EventDisposition.NO_ORDER
        outcome = EVENT_OUTCOMES[event.event_type]
        payment_id = str(data.get("payment_id") or "")
        detail = str(data.get("failure_code") or data.get("reason") or "")
        cause = f"{event.event_type} {payment_id}".strip() + (f": {detail}" if detail else "")
        try:
            await self._record(
                order_id,
                outcome,
                payment_id=payment_id,
                cause=cause,
                inbox=InboxClaim(consumer=CONSUMER, event_id=event.event_id),
            )
        except NotFound:
            return EventDisposition.NO_ORDER
        except FailedPrecondition as exc:
            log.error("payment event %s conflicts with order %s: %s", event.event_id, order_id, exc.message)
            return EventDisposition.CONFLICT
        return EventDisposition.APPLIED
