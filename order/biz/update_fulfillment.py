"""UpdateFulfillment: CONFIRMED or AWAITING_SHIPMENT → PACKED → SHIPPED → DELIVERED, one step at a time."""

from __future__ import annotations

from infra.errors import FailedPrecondition, InvalidArgument, NotFound
from order.biz.ports import OrderRepo, Transition
from order.model.events import EVENT_FOR_STATUS
from order.model.order import Order, OrderStatus
from order.model.status import FULFILMENT_STATUSES, ORDER_STATUS_CONFLICT, sources_of

__all__ = ["UpdateFulfillment"]

_MAX_TRACKING = 128
_MAX_CARRIER = 64


class UpdateFulfillment:
    """Invariant 6: the step is validated before anything is written (SHIPPED needs its carrier and
    tracking number; the other steps take neither). Only a paid (or cash-on-delivery) order is packed,
    and steps are taken in order by a conditional UPDATE whose ``WHERE`` is the status machine's
    ``sources_of``; an illegal step is FAILED_PRECONDITION, and a repeat of the step already taken is a
    no-op. Each step is on the timeline and publishes its event (OrderPacked, OrderShipped with the
    carrier and tracking number, OrderDelivered) in the same transaction (invariant 5): payment captures
    an authorization still open when the order ships (capture on shipment) and marks cash on delivery
    paid when it is delivered; the notification service tells the customer."""

    def __init__(self, repo: OrderRepo) -> None:
        self._repo = repo

    async def __call__(
        self, order_id: str, target: OrderStatus | None, tracking_number: str, carrier: str = ""
    ) -> Order:
        if target not in FULFILMENT_STATUSES:
            raise InvalidArgument("status", "must be PACKED, SHIPPED or DELIVERED")
        if len(tracking_number) > _MAX_TRACKING:
            raise InvalidArgument("tracking_number", f"must be at most {_MAX_TRACKING} characters")
        if len(carrier) > _MAX_CARRIER:
            raise InvalidArgument("carrier", f"must be at most {_MAX_CARRIER} characters")
        if target is OrderStatus.SHIPPED:
            if not tracking_number.strip():
                raise InvalidArgument("tracking_number", "is required to ship an order")
            if not carrier.strip():
                raise InvalidArgument("carrier", "is required to ship an order")
            cause = f"fulfilment: shipped with {carrier}, tracking number {tracking_number}"
        else:
            for name, value in (("tracking_number", tracking_number), ("carrier", carrier)):
                if value:
                    raise InvalidArgument(name, "is only given with SHIPPED")
            cause = f"fulfilment: {target.value.lower()}"
        result = await self._repo.transition(
            Transition(
                order_id=order_id,
                sources=sources_of(target),
                target=target,
                cause=cause,
                event_type=EVENT_FOR_STATUS[target],
                tracking_number=tracking_number,
                carrier=carrier,
            )
        )
        order = result.order
        if order is None:
            raise NotFound(f"order {order_id} not found")
        if result.applied or order.status == target:
            return order
        raise FailedPrecondition(
            f"order {order_id} is {order.status.value}; it cannot become {target.value}",
            reason=ORDER_STATUS_CONFLICT,
            metadata={"status": order.status.value},
        )
