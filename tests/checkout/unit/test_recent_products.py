"""RecentProducts: AddCartItem's products from pricing's answers of the last few seconds."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from checkout.adapter.recent_products import RecentProducts
from checkout.model.catalog import Product, ProductsResult
from kernel.money import Money


class Catalog:
    """Pricing as the cart sees it: a price per (sku, currency), and every call it got."""

    def __init__(self) -> None:
        self.prices: dict[tuple[str, str], int] = {}
        self.calls: list[tuple[tuple[str, ...], str]] = []

    async def get_products(self, skus: Sequence[str], currency_code: str) -> ProductsResult:
        self.calls.append((tuple(skus), currency_code))
        found = {
            sku: Product(sku, f"Product {sku}", "c", "b", 100, "standard", Money(currency_code, price))
            for sku in skus
            if (price := self.prices.get((sku, currency_code))) is not None
        }
        return ProductsResult(products=found, missing_skus=[s for s in skus if s not in found])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def price(result: ProductsResult, sku: str) -> int:
    return result.products[sku].unit_price.amount_minor


async def test_a_product_asked_again_within_the_ttl_is_answered_without_pricing_and_afresh_after() -> None:
    catalog, clock = Catalog(), Clock()
    catalog.prices[("HOT-1", "USD")] = 1000
    recent = RecentProducts(catalog, ttl_seconds=5, clock=clock)

    assert price(await recent.get_products(["HOT-1"], "USD"), "HOT-1") == 1000
    catalog.prices[("HOT-1", "USD")] = 1200
    clock.now += 4.9
    assert price(await recent.get_products(["HOT-1"], "USD"), "HOT-1") == 1000  # a price up to 5 s old
    clock.now += 0.2
    assert price(await recent.get_products(["HOT-1"], "USD"), "HOT-1") == 1200

    assert catalog.calls == [(("HOT-1",), "USD"), (("HOT-1",), "USD")]


async def test_currencies_are_apart_and_unknown_skus_are_always_asked_again() -> None:
    catalog = Catalog()
    catalog.prices[("SKU-1", "USD")] = 1000
    catalog.prices[("SKU-1", "EUR")] = 900
    recent = RecentProducts(catalog, ttl_seconds=5, clock=Clock())

    assert price(await recent.get_products(["SKU-1"], "USD"), "SKU-1") == 1000
    assert price(await recent.get_products(["SKU-1"], "EUR"), "SKU-1") == 900
    for _ in range(2):
        missing = await recent.get_products(["SKU-1", "NOPE"], "USD")
        assert missing.missing_skus == ["NOPE"] and price(missing, "SKU-1") == 1000

    assert catalog.calls == [(("SKU-1",), "USD"), (("SKU-1",), "EUR"), (("NOPE",), "USD"), (("NOPE",), "USD")]


async def test_the_least_recently_used_product_goes_first_when_full() -> None:
    catalog = Catalog()
    for sku in ("A", "B", "C"):
        catalog.prices[(sku, "USD")] = 100
    recent = RecentProducts(catalog, ttl_seconds=60, max_entries=2, clock=Clock())

    await recent.get_products(["A"], "USD")
    await recent.get_products(["B"], "USD")
    await recent.get_products(["A"], "USD")  # A used last: B is the one to go
    await recent.get_products(["C"], "USD")
    catalog.calls.clear()
    await recent.get_products(["A", "C"], "USD")
    await recent.get_products(["B"], "USD")

    assert catalog.calls == [(("B",), "USD")]


@pytest.mark.parametrize(("ttl", "size"), [(0, 10), (-1, 10), (5, 0)])
def test_a_ttl_or_size_that_is_not_positive_is_refused(ttl: float, size: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        RecentProducts(Catalog(), ttl_seconds=ttl, max_entries=size)
