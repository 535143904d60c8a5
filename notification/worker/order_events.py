"""The ``notification-orders`` durable consumer of order events and ``notification-payments`` of payment events
(refunds), each an ``infra.consumer.EventConsumer``.

Explicit ack after the message is settled (sent, buried or skipped, with its inbox row committed); a send
that must wait comes back after the use case's backoff. Safe with several replicas: they share the durable
consumer, and the message row claimed per (event, kind) keeps two of them from both sending a notice.
"""

from __future__ import annotations

import logging

from nats.js import JetStreamContext

from infra.consumer import Event, EventConsumer, Retry
from kernel.money import Money
from notification.biz.notify import CONSUMER, PAYMENTS_CONSUMER, Notify, SendLater
from notification.model.message import EVENT_KINDS, PAYMENT_EVENT_KINDS, Notice

__all__ = ["order_events_consumer", "payment_events_consumer"]

log = logging.getLogger("kassa.notification.orders")

# The channel retries for up to ~20 s within one delivery; the handler gets longer than that.
_ACK_WAIT_SECONDS = 90
_HANDLER_TIMEOUT_SECONDS = 40.0


def _money(raw: object) -> Money | None:
    if not isinstance(raw, dict):
        return None
    code, amount = raw.get("currency_code"), raw.get("amount_minor")
    if not isinstance(code, str) or not isinstance(amount, int) or isinstance(amount, bool):
        return None
    return Money(code, amount)


def notice_from(event: Event) -> Notice | None:
    """The notice an order event (by its aggregate, the order) or a payment event (by its order id) calls for."""
    kind = EVENT_KINDS.get(event.event_type) or PAYMENT_EVENT_KINDS.get(event.event_type)
    order_id = str(event.data.get("order_id") or "")
    if not order_id and event.event_type in EVENT_KINDS:
        order_id = event.aggregate_id
    if kind is None or not order_id:
        return None
    return Notice(
        event.event_id,
        event.event_type,
        kind,
        order_id,
        str(event.data.get("cause") or "")[:300],
        _money(event.data.get("refund_amount")),
        str(event.data.get("payment_outcome") or ""),
    )


def _consumer(js: JetStreamContext, notify: Notify, name: str, service: str, kinds: dict[str, object]) -> EventConsumer:
    async def handle(event: Event) -> str:
        notice = notice_from(event)
        if notice is None:
            # Retrying cannot make it usable (a refund of a payment that never became an order, say).
            log.info("%s event %s (%s) names no order; nothing to send", service, event.event_id, event.event_type)
            return "unusable"
        try:
            return await notify(notice, name)
        except SendLater as later:
            raise Retry(str(later), delay_seconds=later.delay_seconds) from later

    return EventConsumer(
        js,
        name=name,
        service=service,
        event_types=tuple(kinds),
        handler=handle,
        ack_wait_seconds=_ACK_WAIT_SECONDS,
        handler_timeout_seconds=_HANDLER_TIMEOUT_SECONDS,
        # Deployed into a running mesh, the service must not email every customer of the streams' last 7 days.
        from_now_on=True,
    )


def order_events_consumer(js: JetStreamContext, notify: Notify) -> EventConsumer:
    return _consumer(js, notify, CONSUMER, "order", dict(EVENT_KINDS))


def payment_events_consumer(js: JetStreamContext, notify: Notify) -> EventConsumer:
    return _consumer(js, notify, PAYMENTS_CONSUMER, "payment", dict(PAYMENT_EVENT_KINDS))
