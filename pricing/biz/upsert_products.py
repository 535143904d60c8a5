"""UpsertProducts: an admin replaces products and their price lists, all or nothing."""

from __future__ import annotations

from collections.abc import Sequence

from pricing.biz.ports import UnitOfWork
from pricing.model.catalog import Product

__all__ = ["UpsertProducts"]


class UpsertProducts:
    """Replace products and their price lists atomically: a half-applied catalog update never shows
    (DESIGN.md §4.6). Input is validated by the caller before this is reached."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, products: Sequence[Product]) -> list[Product]:
        async with self._uow.transaction() as tx:
            return await tx.products.upsert(products)
