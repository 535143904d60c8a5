"""Payment outcomes from JetStream (payment's webhooks, applied) → PaymentCompletion.

A durable consumer (``checkout-payments``) with explicit ack through ``infra.consumer``: an event for
a session whose ConfirmCheckout is still running is redelivered a moment later, so a webhook that
beats the saga's answer is applied after it, never beside it; unless the running saga already holds
what it says (the authorization it got itself, its own capture: see
:func:`~checkout.biz.checkout.complete_payment.saga_holds`), which is acknowledged at once, so a plain
card checkout's two events cost one delivery each. Applying one twice is harmless: the session claim
is a conditional update and every call behind it is idempotent.
"""

from __future__ import annotations

from nats.js import JetStreamContext

from checkout.biz.checkout.complete_payment import NotYet, PaymentCompletion
from checkout.model.catalog import PaymentStatus
from infra.consumer import Event, EventConsumer, Retry

__all__ = ["EVENT_TYPES", "payment_event_consumer"]

EVENT_TYPES = ("PaymentAuthorized", "PaymentCaptured", "PaymentFailed", "PaymentVoided")
_WAIT_FOR_SAGA_SECONDS = 1.0


def payment_event_consumer(js: JetStreamContext, completion: PaymentCompletion) -> EventConsumer:
    async def handle(event: Event) -> str:
        session_id = str(event.data.get("order_ref") or "")
        try:
            status = PaymentStatus(str(event.data.get("status") or ""))
        except ValueError:
            return f"unknown payment status {event.data.get('status')!r}"
        if not session_id:
            return "no checkout session"
        try:
            payment_id, order_id = str(event.data.get("payment_id") or ""), str(event.data.get("order_id") or "")
            return await completion.on_payment(session_id, payment_id, status, order_id=order_id)
        except NotYet as wait:
            raise Retry(str(wait), _WAIT_FOR_SAGA_SECONDS) from None

    return EventConsumer(js, name="checkout-payments", service="payment", event_types=EVENT_TYPES, handler=handle)
