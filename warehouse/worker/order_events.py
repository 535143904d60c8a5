"""The durable consumer of the order service's OrderCancelled and OrderPaymentFailed events.

A thin loop (:class:`infra.consumer.EventConsumer`) over :class:`warehouse.biz.return_order_stock.ReturnOrderStock`,
which commits the effect with the inbox claim; the consumer acks only after that commit.
"""

from __future__ import annotations

import logging

from nats.js import JetStreamContext

from infra.consumer import Event, EventConsumer
from warehouse.biz.return_order_stock import CONSUMER, ORDER_ENDED_EVENTS, ReturnOrderStock

__all__ = ["OrderEventHandler", "order_events_consumer"]

log = logging.getLogger("kassa.warehouse.order_events")


class OrderEventHandler:
    """Event → use case: the reservation_ref is the order's checkout session id."""

    def __init__(self, return_order_stock: ReturnOrderStock) -> None:
        self._return_order_stock = return_order_stock

    async def __call__(self, event: Event) -> str:
        ref = event.data.get("checkout_session_id")
        if not isinstance(ref, str) or not ref:
            # Nothing to find the reservations by; redelivering would not add it.
            log.error("%s %s has no checkout_session_id; nothing returned", event.event_type, event.event_id)
            return "no checkout_session_id"
        returned = await self._return_order_stock(
            event_id=event.event_id,
            reservation_ref=ref,
            order_id=str(event.data.get("order_id") or event.aggregate_id),
            cause=event.event_type,
        )
        return returned.describe()


def order_events_consumer(js: JetStreamContext, return_order_stock: ReturnOrderStock) -> EventConsumer:
    return EventConsumer(
        js,
        name=CONSUMER,
        service="order",
        event_types=ORDER_ENDED_EVENTS,
        handler=OrderEventHandler(return_order_stock),
    )
