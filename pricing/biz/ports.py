"""What pricing's use cases need from storage, implemented by ``pricing.data``.

The catalog is read and written through a :class:`UnitOfWork`: ``transaction()`` for the admin upsert
(all or nothing), ``read()`` for lookups. Tax and shipping rates are reference data no RPC writes, read
through a :class:`RateRepo` of their own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from pricing.model.catalog import Product
from pricing.model.rates import ShippingRate

__all__ = ["ProductRepo", "RateRepo", "Tx", "UnitOfWork"]


class ProductRepo(Protocol):
    async def find(self, skus: Sequence[str]) -> list[Product]:
        """The known products among ``skus`` with all their prices, in one round trip."""
        ...

    async def upsert(self, products: Sequence[Product]) -> list[Product]:
        """Create or replace the products and their whole price lists (in the Tx's transaction)."""
        ...

    async def snapshot(self) -> str:
        """The database's current snapshot (``pg_snapshot`` text): which transactions have committed."""
        ...

    async def changed(self, since: str | None, after: str, limit: int) -> list[Product]:
        """Up to ``limit`` products past the sku ``after``, in sku order, with all their prices: those last
        written by a transaction the snapshot ``since`` does not show committed, or all when ``since`` is None."""
        ...


class RateRepo(Protocol):
    async def shipping_rate(self, shipping_method: str, currency_code: str) -> ShippingRate | None: ...

    async def tax_rates(self, country_code: str) -> Mapping[str, int]:
        """Basis points per tax class in ``country_code``; classes not listed are untaxed."""
        ...


class Tx(Protocol):
    @property
    def products(self) -> ProductRepo: ...


class UnitOfWork(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """One transaction: commits when the block exits cleanly, rolls back on an exception."""
        ...

    def read(self) -> AbstractAsyncContextManager[Tx]:
        """For reads only: each statement commits by itself (no BEGIN/ROLLBACK round trips)."""
        ...
