"""GetOrder: one order, for its owner or a privileged caller."""

from __future__ import annotations

from kernel.caller import Caller
from kernel.errors import NotFound
from order.biz.ports import OrderRepo, UnitOfWork
from order.model.order import Order

__all__ = ["GetOrder", "load_visible"]


async def load_visible(repo: OrderRepo, order_id: str, caller: Caller) -> Order:
    """The order if the caller may see it; NotFound otherwise, so another customer's order is
    indistinguishable from a missing one."""
    order = await repo.get(order_id)
    if order is None or not caller.owns(order.customer_id):
        raise NotFound(f"order {order_id} not found")
    return order


class GetOrder:
    """Ownership (DESIGN.md §2): a customer can never read another customer's order."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, order_id: str, caller: Caller) -> Order:
        async with self._uow.read() as tx:
            return await load_visible(tx.orders, order_id, caller)
