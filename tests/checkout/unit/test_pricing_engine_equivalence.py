"""The optimistic path (promotions on the held prices, one QuoteOrder that checks them) lands on exactly the totals
of the separate calls (GetProducts || QuoteShipping, ValidatePromotions, CalculateTax), over many carts.

The neighbours are modelled with their own rules, not the checkout fakes' simplifications: promotions with
promotion.model.discount.evaluate (percentages with conditions, fixed amounts, minimum subtotals, free shipping,
buy-x-get-y, combinability), tax with pricing.model.tax.compute_tax (per-line rates by tax class, rounded per line),
shipping by parcel weight. Held prices, categories and brands are stale at random, and the engine's shipping guess
is missing, right, or stale (the rates changed since it was quoted)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkout.biz.checkout.pricing_engine import PricingEngine, PricingInput
from checkout.model.catalog import (
    Address,
    AppliedPromotion,
    Parcel,
    PromotionLine,
    PromotionResult,
    RejectedPromotion,
    TaxLine,
)
from checkout.model.session import Preview, SessionLine
from kernel.money import Money
from pricing.model.rates import TaxableLine
from pricing.model.tax import compute_tax
from promotion.model.discount import evaluate, normalize_codes
from promotion.model.promotion import Cart, CartLine, Conditions, Promotion, PromotionType
from tests.checkout.fakes import WAREHOUSE_ORIGIN, FakePricingGateway, _Scripted

pytestmark = pytest.mark.unit

DEST = Address("Ada", "1 Main St", "", "Springfield", "", "12345", "US", "")
OTHER = Address("East", "2 Dock Rd", "", "Newark", "NJ", "07101", "US", "")
ORIGINS = {"wh-1": WAREHOUSE_ORIGIN, "wh-2": OTHER}
SKUS = ("A", "B", "C", "D")
# Basis points by tax class, as pricing's rate table has them.
RATES = {"standard": 2000, "reduced": 550, "zero": 0}

PROMOTIONS = {
    p.code: p
    for p in (
        Promotion("p1", "BOOKS15", "15% off books", PromotionType.PERCENTAGE, percent_off=15, combinable=True,
                  conditions=Conditions(categories=frozenset({"books"}))),
        Promotion("p2", "FIVE", "5 off over 20", PromotionType.FIXED_AMOUNT, amount_off_minor=500,
                  currency_code="USD", min_subtotal_minor=2000, combinable=True),
        Promotion("p3", "SHIP", "free shipping", PromotionType.FREE_SHIPPING, combinable=True),
        Promotion("p4", "B2G1", "buy 2 get 1", PromotionType.BUY_X_GET_Y,
                  conditions=Conditions(buy_quantity=2, get_quantity=1)),
        Promotion("p5", "HALF", "half off acme over 100", PromotionType.PERCENTAGE, percent_off=50,
                  currency_code="USD", min_subtotal_minor=10000, conditions=Conditions(brands=frozenset({"acme"}))),
        Promotion("p6", "ODD", "33% off", PromotionType.PERCENTAGE, percent_off=33, combinable=True),
    )
}  # fmt: skip
NOW = datetime(2026, 1, 1, tzinfo=UTC)


class ModelPricing(FakePricingGateway):
    """The fake catalog with pricing's tax math (rate by tax class, rounded per line) and shipping by weight."""

    def __init__(self) -> None:
        super().__init__()
        self.base, self.per_kg = 400, 300

    def _shipping(self, parcels: Sequence[Parcel], shipping_method: str, currency_code: str) -> Money:
        per_parcel = [self.base + self.per_kg * -(-p.weight_grams // 1000) for p in parcels]
        return Money(currency_code, sum(per_parcel) * (2 if shipping_method == "express" else 1))

    def calculate_tax_of(self, lines: Sequence[TaxLine], shipping_total: Money, currency_code: str) -> Money:
        assert all(ln.amount.amount_minor >= 0 for ln in lines) and shipping_total.amount_minor >= 0
        taxable = [TaxableLine(ln.sku, ln.tax_class, ln.amount) for ln in lines]
        return compute_tax(taxable, shipping_total, RATES, currency_code).tax_total


class ModelPromotion(_Scripted):
    """ValidatePromotions as the promotion service answers it (its pure rules; nobody's uses counted)."""

    async def validate(
        self, codes: Sequence[str], lines: Sequence[PromotionLine], shipping_total: Money, currency_code: str,
        customer_id: str, *, customer_email: str = "",
    ) -> PromotionResult:  # fmt: skip
        self._enter("validate", tuple(codes), tuple(lines), shipping_total)
        cart = Cart(
            currency_code,
            tuple(CartLine(ln.sku, ln.category, ln.brand, ln.quantity, ln.unit_price) for ln in lines),
            shipping_total,
        )
        result = evaluate(normalize_codes(codes), PROMOTIONS, cart, NOW, {})
        return PromotionResult(
            applied=[AppliedPromotion(a.code, a.discount, a.free_shipping) for a in result.applied],
            rejected=[RejectedPromotion(r.code, r.reason, r.message) for r in result.rejected],
            free_shipping=result.free_shipping,
        )


products = st.fixed_dictionaries(
    {
        "price": st.one_of(st.integers(0, 40_000), st.sampled_from([1, 99, 999, 1000, 3333])),
        "category": st.sampled_from(["books", "toys"]),
        "brand": st.sampled_from(["acme", "zed"]),
        "tax_class": st.sampled_from(sorted(RATES)),
        "weight": st.integers(0, 4000),
    }
)
session_lines = st.lists(
    st.fixed_dictionaries(
        {
            "sku": st.sampled_from(SKUS),
            "quantity": st.integers(1, 6),
            "warehouse": st.sampled_from(sorted(ORIGINS)),
            # What the session holds when it is not the catalog's now: a price, a category or a brand of before.
            "stale": st.one_of(
                st.none(), st.none(), st.none(),
                st.tuples(st.just("price"), st.integers(0, 40_000)),
                st.tuples(st.just("category"), st.sampled_from(["books", "toys", "garden"])),
                st.tuples(st.just("brand"), st.sampled_from(["acme", "zed"])),
            ),
        }
    ),
    min_size=1,
    max_size=5,
)  # fmt: skip
code_lists = st.lists(st.sampled_from([*PROMOTIONS, "NOPE"]), min_size=1, max_size=3, unique=True)


def _held(catalog: dict[str, dict[str, Any]], drawn: list[dict[str, Any]]) -> list[SessionLine]:
    lines = []
    for d in drawn:
        p = catalog[d["sku"]]
        values: dict[str, Any] = {"unit_price_minor": p["price"], "category": p["category"], "brand": p["brand"]}
        if d["stale"] is not None:
            field, value = d["stale"]
            values["unit_price_minor" if field == "price" else field] = value
        lines.append(
            SessionLine(d["sku"], f"Product {d['sku']}", d["quantity"], warehouse_id=d["warehouse"],
                        origin=ORIGINS[d["warehouse"]], weight_grams=p["weight"], tax_class=p["tax_class"], **values)
        )  # fmt: skip
    return lines


async def _both(
    catalog: dict[str, dict[str, Any]], data: PricingInput, guess: str
) -> tuple[Preview, Preview, list[str]]:
    pricing, promotion = ModelPricing(), ModelPromotion()
    for sku, p in catalog.items():
        pricing.add(sku, p["price"], category=p["category"], brand=p["brand"], tax_class=p["tax_class"],
                    weight_grams=p["weight"])  # fmt: skip
    optimistic = PricingEngine(pricing, promotion, 5.0)  # type: ignore[arg-type]
    if guess in ("known", "stale"):
        await optimistic.compute(data)  # the shipment's shipping is now the engine's guess
        if guess == "stale":
            pricing.base += 50  # and the rates changed since (every shipment has a parcel)
    reference = await PricingEngine(pricing, promotion, 5.0, optimistic=False).compute(data)  # type: ignore[arg-type]
    pricing.calls.clear()
    promotion.calls.clear()
    got = await optimistic.compute(data)
    calls = [name for name, _ in promotion.calls] + [name for name, _ in pricing.calls]
    return reference, got, sorted(calls)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    catalog=st.fixed_dictionaries({sku: products for sku in SKUS}),
    drawn=session_lines,
    codes=code_lists,
    method=st.sampled_from(["standard", "express"]),
    guess=st.sampled_from(["missing", "known", "stale"]),
)
def test_the_optimistic_path_lands_on_the_separate_calls_totals(
    catalog: dict[str, dict[str, Any]], drawn: list[dict[str, Any]], codes: list[str], method: str, guess: str
) -> None:
    held = _held(catalog, drawn)
    data = PricingInput("USD", "cust", held, DEST, method, codes, customer_email="ada@example.com")
    reference, got, calls = asyncio.run(_both(catalog, data, guess))

    assert got == reference  # every line, amount, discount, rejection and the delivery window
    assert got.grand_total_minor == reference.grand_total_minor
    stale = any(d["stale"] is not None and _differs(catalog[d["sku"]], d["stale"]) for d in drawn)
    if not stale and guess == "known":
        assert calls == ["quote_order", "validate"]
    elif not stale and guess == "missing":
        assert calls == ["quote_order", "quote_shipping", "validate"]
    else:  # promotions was asked about other prices or shipping: asked again, and the tax computed on its own
        assert calls == sorted(
            [
                "validate",
                "quote_order",
                "validate",
                "calculate_tax",
                *(["quote_shipping"] if guess == "missing" else []),
            ]
        )


def _differs(product: dict[str, Any], stale: tuple[str, Any]) -> bool:
    field, value = stale
    return bool(product["price" if field == "price" else field] != value)
