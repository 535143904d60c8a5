"""CheckStock: real stock levels, for services and admins."""

from __future__ import annotations

from collections.abc import Sequence

from warehouse.biz.ports import UnitOfWork
from warehouse.model.inventory import StockLevel

__all__ = ["CheckStock"]


class CheckStock:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, skus: Sequence[str]) -> list[StockLevel]:
        """Real on_hand / reserved per sku and warehouse that stocks it (never an echo of the request)."""
        async with self._uow.read() as tx:
            return await tx.stock_levels(sorted(set(skus)))
