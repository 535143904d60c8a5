"""The pricing engine: one QuoteOrder without codes; with codes, promotions on the held prices and one QuoteOrder that
checks them (2 calls; the separate calls when the check fails); the separate calls: prices and shipping in parallel
under one deadline, promotions from the same batch, tax last."""

from __future__ import annotations

import asyncio

import pytest

from checkout.biz.checkout.pricing_engine import PricingEngine, PricingInput
from checkout.model.catalog import Address
from checkout.model.session import SessionLine
from kernel.errors import Unavailable
from tests.checkout.fakes import WAREHOUSE_ORIGIN, FakePricingGateway, FakePromotionGateway

pytestmark = pytest.mark.unit

DEST = Address("Ada", "1 Main St", "", "Springfield", "", "12345", "US", "")
OTHER = Address("East", "2 Dock Rd", "", "Newark", "NJ", "07101", "US", "")


def _lines() -> list[SessionLine]:
    return [
        # weights are the snapshot taken at StartCheckout, so shipping needn't wait for GetProducts
        SessionLine("A", "a", 2, 999, "wh-1", WAREHOUSE_ORIGIN, weight_grams=300),
        SessionLine("B", "b", 1, 999, "wh-2", OTHER, weight_grams=1000),
        SessionLine("A", "a", 1, 999, "wh-2", OTHER, weight_grams=300),
    ]


def _setup() -> tuple[FakePricingGateway, FakePromotionGateway]:
    pricing, promotion = FakePricingGateway(shipping_per_parcel=400, tax_basis_points=1000), FakePromotionGateway()
    pricing.add("A", 1000, category="books", brand="acme", weight_grams=300)
    pricing.add("B", 2500, category="toys", brand="zed", weight_grams=1000)
    promotion.add("TEN", 10)
    return pricing, promotion


async def test_totals_use_fresh_prices_one_parcel_per_warehouse_and_tax_after_discount() -> None:
    pricing, promotion = _setup()
    engine = PricingEngine(pricing, promotion, 2.0, optimistic=False)
    preview = await engine.compute(PricingInput("USD", "cust", _lines(), DEST, "standard", ["TEN"]))

    assert pricing.count("get_products") == 1
    assert pricing.calls[0][1][0] == ("A", "B")
    parcels = pricing.calls[[n for n, _ in pricing.calls].index("quote_shipping")][1][0]
    assert {(p.warehouse_id, p.origin.city, p.weight_grams) for p in parcels} == {
        ("wh-1", "Reno", 600),
        ("wh-2", "Newark", 1300),
    }
    promo_lines = promotion.calls[0][1][1]
    assert {(ln.sku, ln.category, ln.brand, ln.quantity) for ln in promo_lines} == {
        ("A", "books", "acme", 3),
        ("B", "toys", "zed", 1),
    }
    assert preview.subtotal_minor == 3 * 1000 + 2500
    assert preview.discount_minor == 550
    assert preview.shipping_minor == 800
    tax_lines = pricing.calls[-1][1][0]
    assert sum(t.amount.amount_minor for t in tax_lines) == 5500 - 550
    assert preview.tax_minor == (5500 - 550 + 800) // 10
    assert preview.grand_total_minor == 5500 - 550 + 800 + preview.tax_minor


async def test_prices_and_shipping_are_fetched_in_parallel() -> None:
    pricing, promotion = _setup()
    shipping_started = asyncio.Event()
    get_products, quote_shipping = pricing.get_products, pricing.quote_shipping

    async def products_after_shipping(skus, currency):
        await shipping_started.wait()  # deadlocks (→ deadline) unless shipping runs concurrently
        return await get_products(skus, currency)

    async def shipping(*args):
        shipping_started.set()
        return await quote_shipping(*args)

    pricing.get_products, pricing.quote_shipping = products_after_shipping, shipping
    # The separate-calls path (the optimistic one's fallback).
    preview = await PricingEngine(pricing, promotion, 2.0, optimistic=False).compute(
        PricingInput("USD", "c", _lines(), DEST, "express", ["TEN"])
    )
    assert preview.shipping_minor == 1600


async def test_without_a_code_one_quote_order_call_gives_the_same_totals() -> None:
    pricing, promotion = _setup()
    engine = PricingEngine(pricing, promotion, 2.0)
    quoted = await engine.compute(PricingInput("USD", "c", _lines(), DEST, "express"))
    assert [name for name, _ in pricing.calls] == ["quote_order"]
    ((lines, parcels, *_rest),) = [args for _, args in pricing.calls]
    assert [(ln.sku, ln.quantity) for ln in lines] == [("A", 2), ("B", 1), ("A", 1)]  # one per session line
    assert {(p.warehouse_id, p.weight_grams) for p in parcels} == {("wh-1", 600), ("wh-2", 1300)}

    # An unknown code applies nothing, so the separate calls must land on the very same totals.
    separate = await PricingEngine(pricing, promotion, 2.0, optimistic=False).compute(
        PricingInput("USD", "c", _lines(), DEST, "express", ["NOPE"])
    )
    assert pricing.count("get_products") == pricing.count("quote_shipping") == pricing.count("calculate_tax") == 1
    assert [code for code, *_ in separate.rejected] == ["NOPE"]
    assert quoted.lines == separate.lines
    assert (quoted.subtotal_minor, quoted.shipping_minor, quoted.tax_minor, quoted.grand_total_minor) == (
        separate.subtotal_minor, separate.shipping_minor, separate.tax_minor, separate.grand_total_minor,
    )  # fmt: skip
    assert quoted.grand_total_minor == 5500 + 1600 + (5500 + 1600) // 10


async def test_missing_address_or_method_means_no_shipping_and_no_tax() -> None:
    pricing, promotion = _setup()
    preview = await PricingEngine(pricing, promotion, 2.0).compute(PricingInput("USD", "c", _lines(), None, ""))
    assert (preview.shipping_minor, preview.tax_minor) == (0, 0)
    assert preview.grand_total_minor == preview.subtotal_minor
    assert pricing.count("quote_shipping") == pricing.count("calculate_tax") == 0


@pytest.mark.parametrize(
    ("codes", "slow", "optimistic"),
    [([], "quote_order", True), (["TEN"], "quote_shipping", False), (["TEN"], "quote_shipping", True),
     (["TEN"], "quote_order", True)],
)  # fmt: skip
async def test_a_slow_dependency_hits_the_single_deadline(codes: list[str], slow: str, optimistic: bool) -> None:
    pricing, promotion = _setup()

    async def hang(*args, **kwargs):
        await asyncio.Event().wait()

    setattr(pricing, slow, hang)
    with pytest.raises(Unavailable):
        await PricingEngine(pricing, promotion, 0.05, optimistic=optimistic).compute(
            PricingInput("USD", "c", _lines(), DEST, "standard", codes)
        )


@pytest.mark.parametrize(
    ("codes", "failing", "optimistic"),
    [([], "quote_order", True), (["TEN"], "get_products", False), (["TEN"], "quote_order", True),
     (["TEN"], "quote_shipping", True)],
)  # fmt: skip
async def test_a_dependency_error_is_raised_as_itself_not_as_a_group(
    codes: list[str], failing: str, optimistic: bool
) -> None:
    pricing, promotion = _setup()
    pricing.fail[failing] = Unavailable("pricing down")
    with pytest.raises(Unavailable, match="pricing down"):
        await PricingEngine(pricing, promotion, 1.0, optimistic=optimistic).compute(
            PricingInput("USD", "c", _lines(), DEST, "standard", codes)
        )
