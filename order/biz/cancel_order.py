"""CancelOrder: stop an order before it leaves the warehouse."""

from __future__ import annotations

from kernel.caller import Caller
from kernel.errors import FailedPrecondition
from order.biz.get_order import load_visible
from order.biz.ports import Transition, UnitOfWork
from order.biz.transitions import apply_transition
from order.model.events import EVENT_FOR_STATUS
from order.model.order import Order, OrderStatus
from order.model.status import ORDER_STATUS_CONFLICT, cancellable_by

__all__ = ["CancelOrder"]


class CancelOrder:
    """Protects invariant 3 (money leak) and 4 (stock leak): the OrderCancelled event, committed with
    the status change, carries the payment id, payment method, checkout session id, lines and grand
    total, so payment voids or refunds, warehouse restocks and promotion gives the use back, each from
    its own durable consumer. Idempotent: cancelling a cancelled order returns it unchanged.
    Who may cancel is the status machine's :func:`cancellable_by` (a customer before PACKED, a
    privileged caller before SHIPPED), used as the conditional UPDATE's ``WHERE``; only the owner or
    a privileged caller sees the order at all, anyone else gets NotFound."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, order_id: str, caller: Caller, reason: str) -> Order:
        async with self._uow.read() as reads:
            order = await load_visible(reads.orders, order_id, caller)
        if order.status == OrderStatus.CANCELLED:
            return order
        who = "operator" if caller.privileged else "customer"
        async with self._uow.statement() as tx:
            result = await apply_transition(
                tx,
                Transition(
                    order_id=order_id,
                    sources=cancellable_by(privileged=caller.privileged),
                    target=OrderStatus.CANCELLED,
                    cause=f"cancelled by {who}: {reason}" if reason else f"cancelled by {who}",
                    event_type=EVENT_FOR_STATUS[OrderStatus.CANCELLED],
                ),
            )
        current = result.order or order
        if result.applied or current.status == OrderStatus.CANCELLED:
            return current
        by = "" if caller.privileged else " by its customer"
        raise FailedPrecondition(
            f"order {order_id} is {current.status.value} and can no longer be cancelled{by}",
            reason=ORDER_STATUS_CONFLICT,
            metadata={"status": current.status.value},
        )
