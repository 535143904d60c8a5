"""CancelOrder: stop an order that has not been packed yet."""

from __future__ import annotations

from infra.errors import FailedPrecondition
from order.biz.get_order import load_visible
from order.biz.ports import Caller, OrderRepo, Transition
from order.model.events import EVENT_FOR_STATUS
from order.model.order import Order, OrderStatus
from order.model.status import CANCELLABLE, ORDER_STATUS_CONFLICT

__all__ = ["CancelOrder"]


class CancelOrder:
    """Protects invariant 3 (money leak) and 4 (stock leak): the OrderCancelled event, committed with
    the status change, carries the payment id and checkout session id so payment voids or refunds
    and warehouse releases stock. Idempotent: cancelling a cancelled order returns it unchanged.
    Ownership: only the owner or a privileged caller; anyone else gets NotFound."""

    def __init__(self, repo: OrderRepo) -> None:
        self._repo = repo

    async def __call__(self, order_id: str, caller: Caller, reason: str) -> Order:
        order = await load_visible(self._repo, order_id, caller)
        if order.status == OrderStatus.CANCELLED:
            return order
        who = "operator" if caller.privileged else "customer"
        result = await self._repo.transition(
            Transition(
                order_id=order_id,
                sources=CANCELLABLE,
                target=OrderStatus.CANCELLED,
                cause=f"cancelled by {who}: {reason}" if reason else f"cancelled by {who}",
                event_type=EVENT_FOR_STATUS[OrderStatus.CANCELLED],
            )
        )
        current = result.order or order
        if result.applied or current.status == OrderStatus.CANCELLED:
            return current
        raise FailedPrecondition(
            f"order {order_id} is {current.status.value} and can no longer be cancelled",
            reason=ORDER_STATUS_CONFLICT,
            metadata={"status": current.status.value},
        )
