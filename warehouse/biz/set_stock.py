"""SetStock: an admin sets on_hand per sku and warehouse, all or nothing."""

from __future__ import annotations

from collections.abc import Sequence

from kernel.errors import InvalidArgument
from warehouse.biz.ports import UnitOfWork
from warehouse.model.inventory import StockLevel, StockSetting

__all__ = ["SetStock"]


class SetStock:
    """Set on_hand per sku and warehouse, all or nothing.

    Protects DESIGN.md §4.1 (reserved <= on_hand) and §4.6 (bad input refused, naming the field, before
    anything is written): an unknown warehouse or an on_hand below what is currently reserved rolls the
    whole request back with INVALID_ARGUMENT naming ``items[i]``.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, settings: Sequence[StockSetting]) -> list[StockLevel]:
        async with self._uow.transaction() as tx:
            missing = await tx.missing_warehouses(sorted({s.warehouse_id for s in settings}))
            for i, s in enumerate(settings):
                if s.warehouse_id in missing:
                    raise InvalidArgument(f"items[{i}].warehouse_id", f"unknown warehouse {s.warehouse_id!r}")
            levels, refused = await tx.set_stock(settings)
            if refused:
                i = refused[0]
                raise InvalidArgument(f"items[{i}].on_hand", "must not be below the units currently reserved")
            return levels
