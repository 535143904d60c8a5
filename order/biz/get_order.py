"""GetOrder: one order, for its owner or a privileged caller."""

from __future__ import annotations

from infra.errors import NotFound
from order.biz.ports import Caller, OrderRepo
from order.model.order import Order

__all__ = ["GetOrder", "load_visible"]


async def load_visible(repo: OrderRepo, order_id: str, caller: Caller) -> Order:
    """The order if the caller may see it; NotFound otherwise, so another customer's order is
    indistinguishable from a missing one."""
    order = await repo.get(order_id)
    if order is None or not order.visible_to(caller.subject, privileged=caller.privileged):
        raise NotFound(f"order {order_id} not found")
    return order


class GetOrder:
    """Ownership (DESIGN.md §2): a customer can never read another customer's order."""

    def __init__(self, repo: OrderRepo) -> None:
        self._repo = repo

    async def __call__(self, order_id: str, caller: Caller) -> Order:
        return await load_visible(self._repo, order_id, caller)
