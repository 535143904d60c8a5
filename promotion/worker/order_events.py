"""The durable consumer of the order service's OrderCancelled and OrderPaymentFailed events.

A thin loop (:class:`infra.consumer.EventConsumer`) over :class:`promotion.biz.give_back.GiveBackOrderUsage`,
which commits the effect with the inbox claim; the consumer acks only after that commit.
"""

from __future__ import annotations

import logging

from nats.js import JetStreamContext

from infra.consumer import Event, EventConsumer
from promotion.biz.give_back import CONSUMER, ORDER_ENDED_EVENTS, GiveBackOrderUsage

__all__ = ["OrderEventHandler", "order_events_consumer"]

log = logging.getLogger("kassa.promotion.order_events")


class OrderEventHandler:
    """Event → use case: the reservation_ref is the order's checkout session id."""

    def __init__(self, give_back: GiveBackOrderUsage) -> None:
        self._give_back = give_back

    async def __call__(self, event: Event) -> str:
        ref = event.data.get("checkout_session_id")
        if not isinstance(ref, str) or not ref:
            # Nothing to find the uses by; redelivering would not add it.
            log.error("%s %s has no checkout_session_id; nothing given back", event.event_type, event.event_id)
            return "no checkout_session_id"
        given = await self._give_back(event_id=event.event_id, reservation_ref=ref)
        return given.describe()


def order_events_consumer(js: JetStreamContext, give_back: GiveBackOrderUsage) -> EventConsumer:
    return EventConsumer(
        js, name=CONSUMER, service="order", event_types=ORDER_ENDED_EVENTS, handler=OrderEventHandler(give_back)
    )
