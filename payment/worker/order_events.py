"""The durable consumers of the order service's events: OrderCancelled and OrderPaymentFailed
(``payment-order-events``), OrderShipped and OrderDelivered (``payment-fulfilment``)."""

from __future__ import annotations

from nats.js import JetStreamContext

from infra.consumer import Event, EventConsumer, Retry
from payment.biz.fulfilment_events import FULFILMENT_CONSUMER, FULFILMENT_EVENT_TYPES, CollectOnFulfilment
from payment.biz.order_events import CONSUMER, ORDER_EVENT_TYPES, ReleaseEndedOrder, RetryLater

__all__ = ["fulfilment_events_consumer", "order_events_consumer"]

# A capture in flight settles within its lease (30 s); look again well before that.
_CAPTURING_RETRY_SECONDS = 5.0


def order_events_consumer(js: JetStreamContext, release: ReleaseEndedOrder) -> EventConsumer:
    async def handle(event: Event) -> str:
        try:
            return await release(event.event_id, event.event_type, event.data)
        except RetryLater as exc:
            raise Retry(str(exc), delay_seconds=_CAPTURING_RETRY_SECONDS) from exc

    return EventConsumer(js, name=CONSUMER, service="order", event_types=ORDER_EVENT_TYPES, handler=handle)


def fulfilment_events_consumer(js: JetStreamContext, collect: CollectOnFulfilment) -> EventConsumer:
    async def handle(event: Event) -> str:
        try:
            return await collect(event.event_id, event.event_type, event.data)
        except RetryLater as exc:
            raise Retry(str(exc), delay_seconds=_CAPTURING_RETRY_SECONDS) from exc

    return EventConsumer(
        js, name=FULFILMENT_CONSUMER, service="order", event_types=FULFILMENT_EVENT_TYPES, handler=handle
    )
