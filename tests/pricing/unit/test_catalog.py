"""GetProducts semantics over a fake unit of work: unknown and unpriced skus are reported missing."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from kernel.money import Money
from pricing.biz.get_products import GetProducts
from pricing.model.catalog import CatalogLookup, Product
from tests.pricing.fakes import FakeProductRepo, FakeUnitOfWork

pytestmark = pytest.mark.unit


async def get_products(repo: FakeProductRepo, skus: Sequence[str], currency_code: str) -> CatalogLookup:
    return await GetProducts(FakeUnitOfWork(repo))(skus, currency_code)


def _product(sku: str, *prices: Money) -> Product:
    return Product(sku, f"Product {sku}", "cat", "brand", 100, "standard", tuple(prices))


async def test_prices_in_the_requested_currency_and_reports_the_rest_missing() -> None:
    repo = FakeProductRepo([_product("A", Money("USD", 100), Money("EUR", 90)), _product("B", Money("EUR", 50))])
    lookup = await get_products(repo, ["A", "B", "C"], "USD")
    assert [(p.product.sku, p.unit_price) for p in lookup.products] == [("A", Money("USD", 100))]
    assert lookup.missing_skus == ["B", "C"]


async def test_one_lookup_for_the_whole_batch_and_duplicates_collapse() -> None:
    repo = FakeProductRepo([_product("A", Money("USD", 100))])
    lookup = await get_products(repo, ["A", "A", "B"], "USD")
    assert repo.calls == [["A", "B"]]
    assert len(lookup.products) == 1


async def test_without_a_currency_every_known_product_is_returned_unpriced() -> None:
    repo = FakeProductRepo([_product("A", Money("USD", 100)), _product("B")])
    lookup = await get_products(repo, ["A", "B"], "")
    assert [p.product.sku for p in lookup.products] == ["A", "B"]
    assert all(p.unit_price is None for p in lookup.products)
    assert lookup.missing_skus == []
