"""The durable consumer of the order service's OrderCancelled and OrderPaymentFailed events.

A thin loop (:class:`infra.consumer.EventConsumer`) over :func:`promotion.biz.give_back.give_back_order_usage`,
which commits the effect with the inbox claim; the consumer acks only after that commit.
"""

from __future__ import annotations

import logging

from nats.js import JetStreamContext

from infra.consumer import Event, EventConsumer
from promotion.biz.give_back import CONSUMER, ORDER_ENDED_EVENTS, give_back_order_usage
from promotion.biz.ports import PromotionRepo

__all__ = ["OrderEventHandler", "order_events_consumer"]

log = logging.getLogger("kassa.promotion.order_events")


class OrderEventHandler:
    """Event → use case: the reservation_ref is the order's checkout session id."""

    def __init__(self, repo: PromotionRepo) -> None:
        self._repo = repo

    async def __call__(self, event: Event) -> str:
        ref = event.data.get("checkout_session_id")
        if not isinstance(ref, str) or not ref:
            # Nothing to find the uses by; redelivering would not add it.
            log.error("%s %s has no checkout_session_id; nothing given back", event.event_type, event.event_id)
            return "no checkout_session_id"
        given = await give_back_order_usage(self._repo, event_id=event.event_id, reservation_ref=ref)
        return given.describe()


def order_events_consumer(js: JetStreamContext, repo: PromotionRepo) -> EventConsumer:
    return EventConsumer(
        js, name=CONSUMER, service="order", event_types=ORDER_ENDED_EVENTS, handler=OrderEventHandler(repo)
    )
