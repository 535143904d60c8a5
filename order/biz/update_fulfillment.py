"""UpdateFulfillment: PACKED → SHIPPED → DELIVERED, one step at a time."""

from __future__ import annotations

from infra.errors import FailedPrecondition, InvalidArgument, NotFound
from order.biz.ports import OrderRepo, Transition
from order.model.events import EVENT_FOR_STATUS
from order.model.order import Order, OrderStatus
from order.model.status import FULFILMENT_STATUSES, ORDER_STATUS_CONFLICT, sources_of

__all__ = ["UpdateFulfillment"]

_MAX_TRACKING = 128


class UpdateFulfillment:
    """Invariant 6: the target status is validated before anything is written. Only a paid (or
    cash-on-delivery) order is packed, and steps are taken in order by a conditional UPDATE; a
    repeat of the step already taken is a no-op."""

    def __init__(self, repo: OrderRepo) -> None:
        self._repo = repo

    async def __call__(self, order_id: str, target: OrderStatus | None, tracking_number: str) -> Order:
        if target not in FULFILMENT_STATUSES:
            raise InvalidArgument("status", "must be PACKED, SHIPPED or DELIVERED")
        if len(tracking_number) > _MAX_TRACKING:
            raise InvalidArgument("tracking_number", f"must be at most {_MAX_TRACKING} characters")
        result = await self._repo.transition(
            Transition(
                order_id=order_id,
                sources=sources_of(target),
                target=target,
                cause=f"fulfilment: {target.value.lower()}",
                event_type=EVENT_FOR_STATUS[target],
                tracking_number=tracking_number,
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
