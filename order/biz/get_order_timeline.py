"""GetOrderTimeline: the status history of one order."""

from __future__ import annotations

from order.biz.get_order import load_visible
from order.biz.ports import Caller, OrderRepo
from order.model.order import StatusChange

__all__ = ["GetOrderTimeline"]


class GetOrderTimeline:
    """Ownership (DESIGN.md §2): the timeline is as private as the order."""

    def __init__(self, repo: OrderRepo) -> None:
        self._repo = repo

    async def __call__(self, order_id: str, caller: Caller) -> list[StatusChange]:
        await load_visible(self._repo, order_id, caller)
        return await self._repo.history(order_id)
