"""UpsertWarehouses: an admin creates or updates warehouses."""

from __future__ import annotations

from collections.abc import Sequence

from warehouse.biz.ports import UnitOfWork
from warehouse.model.inventory import Warehouse

__all__ = ["UpsertWarehouses"]


class UpsertWarehouses:
    """Create or update warehouses (their origin addresses are what shipping is quoted from)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, warehouses: Sequence[Warehouse]) -> list[Warehouse]:
        async with self._uow.transaction() as tx:
            await tx.upsert_warehouses(warehouses)
        async with self._uow.read() as tx:
            return await tx.warehouses([w.warehouse_id for w in warehouses])
