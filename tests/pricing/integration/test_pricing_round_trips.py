"""How many statements and transactions pricing's reads cost: the hot path of every checkout."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from helpers import RoundTrips, Trips, unique
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.config import Settings
from infra.db import create_engine
from kernel.money import Money
from pricing.data.repositories import SqlRateRepo, SqlUnitOfWork
from pricing.data.tables import tax_rates
from pricing.model.catalog import Product

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture(loop_scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(str(settings.database_url), pool_size=2)
    yield engine
    await engine.dispose()


def _product(sku: str, usd: int) -> Product:
    return Product(sku, f"Product {sku}", "gadgets", "Acme", 500, "standard", (Money("EUR", 900), Money("USD", usd)))


async def test_find_is_one_autocommit_statement_and_never_cached(engine: AsyncEngine) -> None:
    uow = SqlUnitOfWork(engine)
    skus = [unique("SKU") for _ in range(3)]
    async with uow.transaction() as tx:
        await tx.products.upsert([_product(s, 1000) for s in skus])
    trips = RoundTrips(engine)

    async with uow.read() as tx:
        found = await tx.products.find([*skus, unique("SKU")])

    assert [p.sku for p in found] == sorted(skus)
    assert found[0].prices == (Money("EUR", 900), Money("USD", 1000))
    # One statement, and no BEGIN/ROLLBACK around it: a single statement is its own snapshot.
    assert trips.take() == Trips(statements=1, autocommit=1)

    async with uow.transaction() as tx:
        await tx.products.upsert([_product(skus[0], 1234)])
    async with uow.read() as tx:
        again = await tx.products.find([skus[0]])
    assert again[0].price_in("USD") == Money("USD", 1234)


async def test_rates_are_read_once_per_ttl_and_then_refreshed(engine: AsyncEngine) -> None:
    country = unique("XT")
    async with engine.begin() as conn:
        await conn.execute(
            tax_rates.insert(), [{"country_code": country, "tax_class": "standard", "rate_basis_points": 1000}]
        )
    try:
        clock = Clock()
        repo = SqlRateRepo(engine, ttl_seconds=5.0, clock=clock)
        trips = RoundTrips(engine)

        assert dict(await repo.tax_rates(country)) == {"standard": 1000}
        assert await repo.shipping_rate("standard", "USD") is not None
        assert trips.take().statements == 2  # each table once, whole
        for _ in range(10):
            await repo.tax_rates(country)
            await repo.shipping_rate("express", "EUR")
        assert await repo.shipping_rate("standard", "JPY") is None
        assert dict(await repo.tax_rates("no-such-country")) == {}
        assert trips.take().statements == 0

        async with engine.begin() as conn:
            await conn.execute(
                tax_rates.update().where(tax_rates.c.country_code == country).values(rate_basis_points=2000)
            )
        clock.now = 4.9
        assert dict(await repo.tax_rates(country)) == {"standard": 1000}  # within the allowed staleness
        clock.now = 5.0
        assert dict(await repo.tax_rates(country)) == {"standard": 2000}
    finally:
        async with engine.begin() as conn:
            await conn.execute(tax_rates.delete().where(tax_rates.c.country_code == country))
