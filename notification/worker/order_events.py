"""The ``notification-orders`` durable consumer of order events (``infra.consumer.EventConsumer``).

Explicit ack after the message is settled (sent, buried or skipped, with its inbox row committed); a send
that must wait comes back after the use case's backoff. Safe with several replicas: they share the durable
consumer, and the message row claimed per (event, kind) keeps two of them from both sending a notice.
"""

from __future__ import annotations

import logging

from nats.js import JetStreamContext

from infra.consumer import Event, EventConsumer, Retry
from notification.biz.notify import CONSUMER, Notify, SendLater
from notification.model.message import EVENT_KINDS, Notice

__all__ = ["order_events_consumer"]

log = logging.getLogger("kassa.notification.orders")

# The channel retries for up to ~20 s within one delivery; the handler gets longer than that.
_ACK_WAIT_SECONDS = 90
_HANDLER_TIMEOUT_SECONDS = 40.0


def notice_from(event: Event) -> Notice | None:
    kind = EVENT_KINDS.get(event.event_type)
    order_id = str(event.data.get("order_id") or event.aggregate_id or "")
    if kind is None or not order_id:
        return None
    return Notice(event.event_id, event.event_type, kind, order_id, str(event.data.get("cause") or "")[:300])


def order_events_consumer(js: JetStreamContext, notify: Notify) -> EventConsumer:
    async def handle(event: Event) -> str:
        notice = notice_from(event)
        if notice is None:
            log.error("order event %s (%s) names no order; ignored", event.event_id, event.event_type)
            return "unusable"
        try:
            return await notify(notice)
        except SendLater as later:
            raise Retry(str(later), delay_seconds=later.delay_seconds) from later

    return EventConsumer(
        js,
        name=CONSUMER,
        service="order",
        event_types=tuple(EVENT_KINDS),
        handler=handle,
        ack_wait_seconds=_ACK_WAIT_SECONDS,
        handler_timeout_seconds=_HANDLER_TIMEOUT_SECONDS,
    )
