"""New-order validation and totals recomputation: every refusal names its field (DESIGN.md §4.6)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from kernel.errors import FailedPrecondition, InvalidArgument, Reason
from kernel.money import Money, percent_of
from order.model.order import Address, NewOrder, OrderDiscount, OrderLine, Totals
from order.model.totals import recompute_totals, verify_authorized_amount, verify_totals
from order.service.validation import Limits
from order.service.validation import validate_new_order as check_request

pytestmark = pytest.mark.unit


def validate_new_order(order: NewOrder, limits: Limits) -> None:
    """What a new order meets: the servicer's request checks, then CreateOrder's totals rules (the model's)."""
    check_request(order, limits)
    verify_totals(order)
    verify_authorized_amount(order)


ADDRESS = Address("Ada Lovelace", "1 Analytical St", "", "London", "", "N1 9GU", "GB", "")


def usd(amount: int, currency: str = "USD") -> Money:
    return Money(currency, amount)


def line(sku: str, unit: int, qty: int, currency: str = "USD") -> OrderLine:
    return OrderLine(sku, sku.title(), qty, Money(currency, unit), Money(currency, unit * qty), "wh-1", "standard")


def make_order(
    lines: tuple[OrderLine, ...] = (line("apple", 1999, 1),),
    discounts: tuple[OrderDiscount, ...] = (),
    shipping: int = 500,
    tax: int = 160,
    currency: str = "USD",
    **overrides: Any,
) -> NewOrder:
    """A consistent order whose totals are recomputed from its parts, then optionally overridden."""
    subtotal = sum(ln.line_total.amount_minor for ln in lines)
    discount = sum(d.amount.amount_minor for d in discounts)
    totals = Totals(
        Money(currency, subtotal),
        Money(currency, discount),
        Money(currency, shipping),
        Money(currency, tax),
        Money(currency, subtotal - discount + shipping + tax),
    )
    order = NewOrder(
        checkout_session_id="sess-1",
        customer_id="cust-1",
        email="ada@example.com",
        lines=lines,
        discounts=discounts,
        totals=totals,
        shipping_address=ADDRESS,
        billing_address=None,
        shipping_method="standard",
        payment_id="pay-1",
        payment_method="tok_visa",
        notes="",
        authorized_amount=totals.grand_total,
    )
    return dataclasses.replace(order, **overrides)


def with_totals(order: NewOrder, **changes: Money) -> NewOrder:
    return dataclasses.replace(order, totals=dataclasses.replace(order.totals, **changes))


def refused_field(order: NewOrder, limits: Limits | None = None) -> str:
    with pytest.raises(InvalidArgument) as exc_info:
        validate_new_order(order, limits or Limits())
    assert exc_info.value.metadata["field"] == exc_info.value.field
    return exc_info.value.field


def test_a_consistent_order_is_accepted() -> None:
    validate_new_order(make_order(), Limits())


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"checkout_session_id": ""}, "checkout_session_id"),
        ({"checkout_session_id": "x" * 129}, "checkout_session_id"),
        ({"customer_id": "  "}, "customer_id"),
        ({"email": "not-an-email"}, "email"),
        ({"lines": ()}, "lines"),
        ({"lines": (line("apple", 100, 1), line("", 100, 1))}, "lines[1].sku"),
        ({"lines": (line("apple", 100, 1), line("pear", 100, 0))}, "lines[1].quantity"),
        ({"lines": (line("apple", 100, 1000),)}, "lines[0].quantity"),
        ({"lines": (line("apple", -5, 1),)}, "lines[0].unit_price.amount_minor"),
        ({"shipping_address": None}, "shipping_address"),
        ({"shipping_address": dataclasses.replace(ADDRESS, line1="")}, "shipping_address.line1"),
        ({"shipping_address": dataclasses.replace(ADDRESS, country_code="gb")}, "shipping_address.country_code"),
        ({"billing_address": dataclasses.replace(ADDRESS, city="")}, "billing_address.city"),
        ({"shipping_method": "drone"}, "shipping_method"),
        ({"payment_method": ""}, "payment_method"),
        ({"notes": "n" * 1001}, "notes"),
        ({"discounts": (OrderDiscount("", usd(100)),)}, "discounts[0].code"),
        # What Postgres can't store (NUL in text or jsonb) or a field must not hold (control characters).
        ({"checkout_session_id": "sess\x00"}, "checkout_session_id"),
        ({"customer_id": "cust\x001"}, "customer_id"),
        ({"email": "ada\x00@example.com"}, "email"),
        ({"lines": (line("app\x00le", 100, 1),)}, "lines[0].sku"),
        ({"lines": (dataclasses.replace(line("apple", 100, 1), name="Apple\x00"),)}, "lines[0].name"),
        ({"lines": (dataclasses.replace(line("apple", 100, 1), warehouse_id="wh\x1b"),)}, "lines[0].warehouse_id"),
        ({"discounts": (OrderDiscount("SAVE\x00", usd(100)),)}, "discounts[0].code"),
        ({"shipping_address": dataclasses.replace(ADDRESS, name="Ada\x00")}, "shipping_address.name"),
        ({"shipping_address": dataclasses.replace(ADDRESS, country_code="GB\n")}, "shipping_address.country_code"),
        ({"billing_address": dataclasses.replace(ADDRESS, phone="\x07")}, "billing_address.phone"),
        ({"payment_id": "pay\x00"}, "payment_id"),
        ({"payment_method": "tok_visa\x00"}, "payment_method"),
        ({"notes": "leave\x00it"}, "notes"),
        # Amounts past what one payment carries, and past what a bigint column holds.
        ({"lines": (line("apple", 10**11, 1),)}, "lines[0].unit_price.amount_minor"),
        ({"lines": (line("apple", 2**62, 999),)}, "lines[0].unit_price.amount_minor"),
        ({"lines": (line("apple", 10**9, 999),)}, "lines[0].line_total.amount_minor"),
    ],
)
def test_invalid_fields_are_named(overrides: dict[str, Any], field: str) -> None:
    assert refused_field(make_order(**overrides)) == field


def test_what_checkout_and_warehouse_accept_is_accepted() -> None:
    """An order refused at step 7 is refused after its payment was authorized: take what upstream takes."""
    email = "a" * 64 + "@" + "b" * 60 + "." + "b" * 60 + "." + "b" * 58 + ".example"  # 253 characters
    wide = dataclasses.replace(line("apple", 100, 1), warehouse_id="w" * 200)
    validate_new_order(make_order(email=email, lines=(wide,), payment_method="tok_" + "a" * 251), Limits())


def test_notes_may_span_lines() -> None:
    validate_new_order(make_order(notes="leave it\r\nat the door\t(back)"), Limits())


def test_too_many_discounts_is_refused_by_the_limit() -> None:
    order = make_order(discounts=tuple(OrderDiscount(f"C{i}", usd(1)) for i in range(3)))
    assert refused_field(order, Limits(max_discounts=2)) == "discounts"
    assert refused_field(make_order(discounts=(OrderDiscount("C", usd(0)),) * 21)) == "discounts"


def test_too_many_lines_is_refused_by_the_limit() -> None:
    order = make_order(lines=tuple(line(f"sku{i}", 100, 1) for i in range(3)))
    assert refused_field(order, Limits(max_lines=2)) == "lines"


def test_negative_tax_is_refused() -> None:
    order = make_order(tax=-1)
    assert refused_field(order) == "totals.tax_total.amount_minor"


def test_unsupported_currency_names_the_grand_total_currency() -> None:
    assert refused_field(make_order(currency="XXX", lines=(line("a", 100, 1, "XXX"),))) == (
        "totals.grand_total.currency_code"
    )


def test_a_line_in_another_currency_is_a_currency_mismatch() -> None:
    order = make_order(lines=(line("apple", 100, 1), line("pear", 100, 1, "EUR")))
    with pytest.raises(InvalidArgument) as exc_info:
        validate_new_order(order, Limits())
    assert exc_info.value.field == "lines[1].unit_price.currency_code"
    assert exc_info.value.reason == Reason.CURRENCY_MISMATCH


def test_a_total_in_another_currency_is_refused() -> None:
    order = with_totals(make_order(), shipping_total=Money("EUR", 500))
    assert refused_field(order) == "totals.shipping_total.currency_code"


def test_line_total_must_be_exactly_unit_price_times_quantity() -> None:
    # 10.00 split three ways and rounded is 3.33 each: 3 x 333 = 999, never 1000.
    bad = dataclasses.replace(line("third", 333, 3), line_total=usd(1000))
    assert refused_field(make_order(lines=(bad,))) == "lines[0].line_total"


def test_recompute_sums_lines_and_discounts() -> None:
    order = make_order(
        lines=(line("apple", 1999, 2), line("pear", 250, 3)),
        discounts=(OrderDiscount("TENOFF", usd(1000)), OrderDiscount("SHIP", usd(500))),
        shipping=500,
        tax=321,
    )
    totals = recompute_totals(order)
    assert totals.subtotal == usd(4748)
    assert totals.discount_total == usd(1500)
    assert totals.grand_total == usd(4748 - 1500 + 500 + 321)
    validate_new_order(order, Limits())


def test_a_percentage_discount_rounded_half_up_upstream_adds_up() -> None:
    # 15% of 19.99 is 2.9985: promotion rounds half up to 3.00; the order sums integers only.
    discount = percent_of(1999, 1500)
    assert discount == 300
    order = make_order(discounts=(OrderDiscount("FIFTEEN", usd(discount)),), shipping=0, tax=0)
    validate_new_order(order, Limits())
    assert order.totals.grand_total == usd(1699)


def test_a_grand_total_rounded_from_floats_is_off_by_one_and_refused() -> None:
    # 15% of 19.99 truncated instead of rounded half up is 2.99, giving 17.00; the parts say 16.99.
    order = make_order(discounts=(OrderDiscount("FIFTEEN", usd(300)),), shipping=0, tax=0)
    assert refused_field(with_totals(order, grand_total=usd(1700))) == "totals.grand_total"


def test_zero_decimal_currency_totals() -> None:
    order = make_order(lines=(line("tea", 1500, 2, "JPY"),), shipping=0, tax=300, currency="JPY")
    validate_new_order(order, Limits())
    assert recompute_totals(order).grand_total == Money("JPY", 3300)


def test_the_first_inconsistent_total_is_named() -> None:
    order = make_order()
    wrong_everything = with_totals(order, subtotal=usd(1), discount_total=usd(1), grand_total=usd(1))
    assert refused_field(wrong_everything) == "totals.subtotal"
    wrong_discount = with_totals(order, discount_total=usd(1), grand_total=usd(1))
    assert refused_field(wrong_discount) == "totals.discount_total"
    assert refused_field(with_totals(order, grand_total=usd(order.totals.grand_total.amount_minor + 1))) == (
        "totals.grand_total"
    )


def test_discounts_may_cover_subtotal_and_shipping_but_not_more() -> None:
    free = make_order(discounts=(OrderDiscount("ALL", usd(1999 + 500)),), tax=0)
    validate_new_order(free, Limits())
    assert free.totals.grand_total == usd(0)
    too_much = make_order(discounts=(OrderDiscount("MORE", usd(1999 + 501)),), tax=0)
    # Even with the grand total clamped at zero, the excess discount is what is refused.
    clamped = dataclasses.replace(with_totals(too_much, grand_total=usd(0)), authorized_amount=usd(0))
    assert refused_field(clamped) == "totals.discount_total"


def test_authorized_amount_is_required_in_the_order_currency() -> None:
    assert refused_field(make_order(authorized_amount=None)) == "authorized_amount"
    with pytest.raises(InvalidArgument) as exc_info:
        validate_new_order(make_order(authorized_amount=Money("EUR", 2659)), Limits())
    assert exc_info.value.field == "authorized_amount.currency_code"
    assert exc_info.value.reason == Reason.CURRENCY_MISMATCH
    assert refused_field(make_order(authorized_amount=usd(-1))) == "authorized_amount.amount_minor"


@pytest.mark.parametrize("authorized", [2658, 2660, 0])
def test_an_authorization_of_another_amount_than_the_grand_total_is_refused(authorized: int) -> None:
    order = make_order(authorized_amount=usd(authorized))
    assert order.totals.grand_total == usd(2659)
    with pytest.raises(FailedPrecondition) as exc_info:
        validate_new_order(order, Limits())
    assert exc_info.value.reason == Reason.PAYMENT_AMOUNT_MISMATCH
    assert exc_info.value.metadata == {
        "authorized_minor": str(authorized),
        "grand_total_minor": "2659",
        "currency_code": "USD",
    }


def test_a_zero_total_order_needs_no_payment() -> None:
    free = make_order(
        discounts=(OrderDiscount("ALL", usd(1999)),),
        shipping=0,
        tax=0,
        payment_id="",
        payment_method="",
        authorized_amount=usd(0),
    )
    validate_new_order(free, Limits())
    assert free.totals.grand_total == usd(0)
    assert refused_field(make_order(payment_method="")) == "payment_method"
