"""Stock and warehouse administration, and the read-only stock view."""

from __future__ import annotations

from collections.abc import Sequence

from infra.errors import InvalidArgument
from warehouse.biz.ports import InventoryStore
from warehouse.model.inventory import StockLevel, StockSetting, Warehouse

__all__ = ["check_stock", "list_warehouses", "set_stock", "upsert_warehouses"]


async def check_stock(store: InventoryStore, skus: Sequence[str]) -> list[StockLevel]:
    """Real on_hand / reserved per sku and warehouse that stocks it (never an echo of the request)."""
    return await store.stock_levels(sorted(set(skus)))


async def set_stock(store: InventoryStore, settings: Sequence[StockSetting]) -> list[StockLevel]:
    """Set on_hand per sku and warehouse, all or nothing.

    Protects DESIGN.md §4.1 (reserved <= on_hand) and §4.6 (bad input refused, naming the field, before
    anything is written): an unknown warehouse or an on_hand below what is currently reserved rolls the
    whole request back with INVALID_ARGUMENT naming ``items[i]``.
    """
    async with store.transaction() as tx:
        missing = await tx.missing_warehouses(sorted({s.warehouse_id for s in settings}))
        for i, s in enumerate(settings):
            if s.warehouse_id in missing:
                raise InvalidArgument(f"items[{i}].warehouse_id", f"unknown warehouse {s.warehouse_id!r}")
        levels, refused = await tx.set_stock(settings)
        if refused:
            i = refused[0]
            raise InvalidArgument(f"items[{i}].on_hand", "must not be below the units currently reserved")
        return levels


async def list_warehouses(store: InventoryStore) -> list[Warehouse]:
    return await store.warehouses()


async def upsert_warehouses(store: InventoryStore, warehouses: Sequence[Warehouse]) -> list[Warehouse]:
    """Create or update warehouses (their origin addresses are what shipping is quoted from)."""
    async with store.transaction() as tx:
        await tx.upsert_warehouses(warehouses)
    return await store.warehouses([w.warehouse_id for w in warehouses])
