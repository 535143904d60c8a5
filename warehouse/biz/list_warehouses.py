"""ListWarehouses: every warehouse with its origin address."""

from __future__ import annotations

from warehouse.biz.ports import UnitOfWork
from warehouse.model.inventory import Warehouse

__all__ = ["ListWarehouses"]


class ListWarehouses:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self) -> list[Warehouse]:
        async with self._uow.read() as tx:
            return await tx.warehouses()
