"""The ``order-payments`` durable consumer of payment events (``infra.consumer.EventConsumer``).

Explicit ack, only after the effect committed; the effect and the inbox claim share a transaction
(see :class:`order.biz.apply_payment_event.ApplyPaymentEvent`), so a redelivered or republished
event has no second effect. Safe with several replicas: they share the durable consumer.
"""

from __future__ import annotations

import logging

from nats.js import JetStreamContext

from infra.consumer import Event, EventConsumer
from order.biz.apply_payment_event import CONSUMER, EVENT_TYPES, ApplyPaymentEvent, PaymentEvent

__all__ = ["payment_event_consumer"]

log = logging.getLogger("kassa.order.payments")


def payment_event_consumer(js: JetStreamContext, apply: ApplyPaymentEvent) -> EventConsumer:
    async def handle(event: Event) -> str:
        parsed = PaymentEvent.from_data(event.event_id, event.event_type, event.data)
        if parsed is None:
            # Retrying cannot make it usable; ack it so it does not block the consumer.
            log.error("payment event %s (%s) has no payment id; ignored", event.event_id, event.event_type)
            return "unusable"
        return (await apply(parsed)).value

    return EventConsumer(js, name=CONSUMER, service="payment", event_types=EVENT_TYPES, handler=handle)
