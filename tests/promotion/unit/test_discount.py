"""Promotion pricing: discount math, eligibility, limits, combinability and caps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kernel.money import Money
from promotion.model.discount import buy_x_get_y_discount, evaluate, normalize_codes
from promotion.model.promotion import Cart, CartLine, Conditions, Evaluation, Promotion, PromotionType

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def line(sku: str, qty: int, price: int, category: str = "gadgets", brand: str = "Acme") -> CartLine:
    return CartLine(sku, category, brand, qty, Money("USD", price))


def cart(*lines: CartLine, shipping: int = 0, currency: str = "USD") -> Cart:
    return Cart(currency, tuple(lines), Money(currency, shipping))


def promo(code: str, kind: PromotionType, **kw: Any) -> Promotion:
    kw.setdefault("combinable", True)
    return Promotion(promotion_id=f"id-{code}", code=code, name=code, type=kind, **kw)


def run(cart_: Cart, *promotions: Promotion, codes: list[str] | None = None, uses: dict[str, int] | None = None):
    by_code = {p.code: p for p in promotions}
    return evaluate(codes or list(by_code), by_code, cart_, NOW, uses or {})


def discounts(result: Evaluation) -> dict[str, int]:
    return {a.code: a.discount.amount_minor for a in result.applied}


def reasons(result: Evaluation) -> dict[str, str]:
    return {r.code: r.reason for r in result.rejected}


# -- the four types ---------------------------------------------------------------------------


def test_percentage_rounds_half_up() -> None:
    # 15% of 1010 = 151.5 -> 152; 15% of 1009 = 151.35 -> 151
    assert discounts(run(cart(line("A", 1, 1010)), promo("P15", PromotionType.PERCENTAGE, percent_off=15))) == {
        "P15": 152
    }
    assert discounts(run(cart(line("A", 1, 1009)), promo("P15", PromotionType.PERCENTAGE, percent_off=15))) == {
        "P15": 151
    }


def test_percentage_applies_only_to_eligible_lines() -> None:
    p = promo("BOOKS", PromotionType.PERCENTAGE, percent_off=10, conditions=Conditions(categories=frozenset({"Books"})))
    c = cart(line("A", 2, 1000, category="books"), line("B", 1, 5000, category="toys"))
    assert discounts(run(c, p)) == {"BOOKS": 200}


def test_fixed_amount_is_capped_at_the_eligible_subtotal() -> None:
    p = promo(
        "TENOFF",
        PromotionType.FIXED_AMOUNT,
        amount_off_minor=1000,
        currency_code="USD",
        conditions=Conditions(skus=frozenset({"A"})),
    )
    assert discounts(run(cart(line("A", 1, 600), line("B", 1, 5000)), p)) == {"TENOFF": 600}


def test_fixed_amount_in_another_currency_does_not_apply() -> None:
    p = promo("EUR5", PromotionType.FIXED_AMOUNT, amount_off_minor=500, currency_code="EUR")
    result = run(cart(line("A", 1, 5000)), p)
    assert result.applied == []
    assert reasons(result) == {"EUR5": "PROMOTION_INVALID"}
    assert "EUR" in result.rejected[0].message


def test_free_shipping_takes_off_the_shipping_total() -> None:
    result = run(cart(line("A", 1, 5000), shipping=799), promo("SHIP", PromotionType.FREE_SHIPPING))
    assert result.free_shipping is True
    assert result.applied[0].free_shipping is True
    assert result.discount_total == Money("USD", 799)


def test_second_free_shipping_code_is_rejected() -> None:
    result = run(
        cart(line("A", 1, 5000), shipping=799),
        promo("SHIP1", PromotionType.FREE_SHIPPING),
        promo("SHIP2", PromotionType.FREE_SHIPPING),
    )
    assert discounts(result) == {"SHIP1": 799}
    assert reasons(result) == {"SHIP2": "PROMOTION_INVALID"}


def test_buy_two_get_one_frees_the_cheapest_units() -> None:
    p = promo("B2G1", PromotionType.BUY_X_GET_Y, conditions=Conditions(buy_quantity=2, get_quantity=1))
    # 6 eligible units -> 2 free: the two cheapest units (300 and 500).
    c = cart(line("A", 3, 1000), line("B", 1, 300), line("C", 2, 500))
    assert discounts(run(c, p)) == {"B2G1": 300 + 500}


def test_buy_x_get_y_counts_only_complete_groups() -> None:
    assert buy_x_get_y_discount([line("A", 2, 1000)], 2, 1) == 0
    assert buy_x_get_y_discount([line("A", 5, 1000)], 2, 1) == 1000
    assert buy_x_get_y_discount([line("A", 4, 1000)], 1, 1) == 2000


def test_buy_x_get_y_without_enough_units_is_rejected() -> None:
    p = promo("B2G1", PromotionType.BUY_X_GET_Y, conditions=Conditions(buy_quantity=2, get_quantity=1))
    result = run(cart(line("A", 2, 1000)), p)
    assert reasons(result) == {"B2G1": "PROMOTION_INVALID"}


# -- eligibility -------------------------------------------------------------------------------


def test_unknown_code_is_invalid() -> None:
    result = evaluate(["NOPE"], {}, cart(line("A", 1, 100)), NOW, {})
    assert reasons(result) == {"NOPE": "PROMOTION_INVALID"}


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"active": False}, "not active"),
        ({"starts_at": NOW + timedelta(days=1)}, "not started"),
        ({"ends_at": NOW}, "expired"),
        ({"currency_code": "EUR"}, "EUR"),
        ({"min_subtotal_minor": 10_001}, "at least"),
        ({"conditions": Conditions(brands=frozenset({"Other"}))}, "qualifies"),
    ],
)
def test_ineligible_promotions_are_invalid(changes: dict[str, Any], fragment: str) -> None:
    p = promo("P10", PromotionType.PERCENTAGE, percent_off=10, **changes)
    result = run(cart(line("A", 1, 10_000)), p)
    assert result.applied == []
    assert result.rejected[0].reason == "PROMOTION_INVALID"
    assert fragment in result.rejected[0].message


def test_inside_the_window_and_at_the_minimum_applies() -> None:
    p = promo(
        "P10",
        PromotionType.PERCENTAGE,
        percent_off=10,
        starts_at=NOW,
        ends_at=NOW + timedelta(seconds=1),
        min_subtotal_minor=10_000,
        currency_code="USD",
        conditions=Conditions(brands=frozenset({"acme"})),
    )
    assert discounts(run(cart(line("A", 1, 10_000)), p)) == {"P10": 1000}


def test_reached_usage_limit_is_exhausted() -> None:
    p = promo("P10", PromotionType.PERCENTAGE, percent_off=10, usage_limit=3, used_count=2, reserved_count=1)
    assert reasons(run(cart(line("A", 1, 1000)), p)) == {"P10": "PROMOTION_EXHAUSTED"}


def test_per_customer_limit_is_exhausted_for_that_customer_only() -> None:
    p = promo("ONCE", PromotionType.PERCENTAGE, percent_off=10, usage_limit_per_customer=1)
    c = cart(line("A", 1, 1000))
    assert reasons(run(c, p, uses={"id-ONCE": 1})) == {"ONCE": "PROMOTION_EXHAUSTED"}
    assert discounts(run(c, p, uses={})) == {"ONCE": 100}


# -- combinability and caps ------------------------------------------------------------------------


def test_a_non_combinable_first_code_rejects_the_later_ones() -> None:
    solo = promo("SOLO", PromotionType.PERCENTAGE, percent_off=20, combinable=False)
    other = promo("SHIP", PromotionType.FREE_SHIPPING)
    result = run(cart(line("A", 1, 1000), shipping=500), solo, other, codes=["SOLO", "SHIP"])
    assert discounts(result) == {"SOLO": 200}
    assert reasons(result) == {"SHIP": "PROMOTION_INVALID"}
    assert "SOLO" in result.rejected[0].message


def test_a_non_combinable_later_code_is_rejected() -> None:
    ship = promo("SHIP", PromotionType.FREE_SHIPPING)
    solo = promo("SOLO", PromotionType.PERCENTAGE, percent_off=20, combinable=False)
    result = run(cart(line("A", 1, 1000), shipping=500), ship, solo, codes=["SHIP", "SOLO"])
    assert discounts(result) == {"SHIP": 500}
    assert reasons(result) == {"SOLO": "PROMOTION_INVALID"}


def test_combinable_discounts_never_exceed_the_subtotal() -> None:
    p1 = promo("HALF", PromotionType.PERCENTAGE, percent_off=60)
    p2 = promo("FIXED", PromotionType.FIXED_AMOUNT, amount_off_minor=800, currency_code="USD")
    p3 = promo("MORE", PromotionType.PERCENTAGE, percent_off=10)
    result = run(cart(line("A", 1, 1000), shipping=300), p1, p2, p3, promo("SHIP", PromotionType.FREE_SHIPPING))
    # 600 + min(800, 400 left) = 1000 = subtotal; MORE has nothing left; shipping is separate.
    assert discounts(result) == {"HALF": 600, "FIXED": 400, "SHIP": 300}
    assert reasons(result) == {"MORE": "PROMOTION_INVALID"}
    assert result.discount_total == Money("USD", 1300)


def test_codes_are_case_insensitive_and_collapsed() -> None:
    assert normalize_codes([" welcome10", "WELCOME10", "Ship", "", "  "]) == ["WELCOME10", "SHIP"]
