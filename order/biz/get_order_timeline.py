"""GetOrderTimeline: the status history of one order."""

from __future__ import annotations

from kernel.caller import Caller
from order.biz.get_order import load_visible
from order.biz.ports import UnitOfWork
from order.model.order import StatusChange

__all__ = ["GetOrderTimeline"]


class GetOrderTimeline:
    """Ownership (DESIGN.md §2): the timeline is as private as the order."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, order_id: str, caller: Caller) -> list[StatusChange]:
        async with self._uow.read() as tx:
            await load_visible(tx.orders, order_id, caller)
            return await tx.orders.history(order_id)
