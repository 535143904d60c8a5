"""Fakes of pricing's ports for the unit tests: the product repository and the unit of work over it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from pricing.model.catalog import Product


class FakeProductRepo:
    def __init__(self, products: list[Product]) -> None:
        self.products = {p.sku: p for p in products}
        self.calls: list[list[str]] = []

    async def find(self, skus: Sequence[str]) -> list[Product]:
        self.calls.append(list(skus))
        return [self.products[s] for s in skus if s in self.products]

    async def upsert(self, products: Sequence[Product]) -> list[Product]:
        self.products.update({p.sku: p for p in products})
        return list(products)


class FakeUnitOfWork:
    """Hands out one Tx holding ``repo``, for transactions and reads alike."""

    def __init__(self, repo: FakeProductRepo) -> None:
        self.products = repo

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeUnitOfWork]:
        yield self

    @asynccontextmanager
    async def read(self) -> AsyncIterator[FakeUnitOfWork]:
        yield self
