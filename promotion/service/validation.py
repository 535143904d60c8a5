"""Request validation and protobuf -> model conversion; each refusal names the field (DESIGN.md §4.6)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from infra.pb import checked_currency, checked_datetime, money_in_currency
from kassa.common.v1 import money_pb2
from kassa.promotion.v1 import promotion_pb2
from kernel.errors import InvalidArgument
from kernel.validation import MAX_AMOUNT_MINOR, check_amount, check_count, check_email, check_sku, check_text
from promotion.model.promotion import Cart, CartLine, Conditions, Promotion, PromotionType
from promotion.service.convert import PB_TYPES

__all__ = [
    "MAX_CODES",
    "MAX_LINES",
    "cart_from_pb",
    "check_codes",
    "check_customer",
    "check_customer_email",
    "check_reference",
    "promotion_from_pb",
]

MAX_CODES = 10
MAX_LINES = 1000
MAX_QUANTITY = 1_000_000
_CODE = re.compile(r"[A-Z0-9_-]{3,32}")
_REF_MAX = 128
_LABEL_MAX = 128
_NAME_MAX = 200
_CUSTOMER_MAX = 255


def check_reference(field: str, ref: str) -> str:
    return check_text(field, ref, max_length=_REF_MAX, required=True)


def check_customer(field: str, customer_id: str, *, required: bool) -> str:
    return check_text(field, customer_id, max_length=_CUSTOMER_MAX, required=required)


def check_customer_email(email: str) -> str:
    """The order's email, optional (a per-customer limit then counts the customer id alone): blank is none, as
    checkout has it; any other value is an email address by the shared rule, which checkout applied before."""
    if not email.strip():
        return ""
    return check_email("customer_email", email)


def check_codes(codes: Sequence[str]) -> list[str]:
    if len(codes) > MAX_CODES:
        raise InvalidArgument("codes", f"at most {MAX_CODES} codes per order")
    for i, code in enumerate(codes):
        if not code.strip():
            raise InvalidArgument(f"codes[{i}]", "must not be empty")
        if len(code.strip()) > 64:
            raise InvalidArgument(f"codes[{i}]", "at most 64 characters")
        check_text(f"codes[{i}]", code, max_length=len(code))
    return list(codes)


def cart_from_pb(
    currency_code: str, lines: Sequence[promotion_pb2.PromotionLine], shipping_total: money_pb2.Money
) -> Cart:
    currency = checked_currency("currency_code", currency_code)
    if len(lines) > MAX_LINES:
        raise InvalidArgument("lines", f"at most {MAX_LINES} lines")
    cart_lines: list[CartLine] = []
    subtotal = 0
    for i, line in enumerate(lines):
        check_sku(f"lines[{i}].sku", line.sku)
        check_text(f"lines[{i}].category", line.category, max_length=_LABEL_MAX)
        check_text(f"lines[{i}].brand", line.brand, max_length=_LABEL_MAX)
        if not 1 <= line.quantity <= MAX_QUANTITY:
            raise InvalidArgument(f"lines[{i}].quantity", f"must be between 1 and {MAX_QUANTITY}")
        price = money_in_currency(f"lines[{i}].unit_price", line.unit_price, currency)
        # Discounts are shares of these: bounded here, no total computed from them passes int64.
        subtotal += price.amount_minor * line.quantity
        if subtotal > MAX_AMOUNT_MINOR:
            raise InvalidArgument(f"lines[{i}]", f"the cart's subtotal passes {MAX_AMOUNT_MINOR:,} minor units")
        cart_lines.append(CartLine(line.sku, line.category, line.brand, line.quantity, price))
    shipping = money_in_currency("shipping_total", shipping_total, currency)
    return Cart(currency, tuple(cart_lines), shipping)


def _labels(field: str, values: Sequence[str], *, skus: bool = False) -> frozenset[str]:
    check_count(field, values, MAX_LINES)
    for i, value in enumerate(values):
        if not value.strip() or len(value) > _LABEL_MAX:
            raise InvalidArgument(f"{field}[{i}]", f"must be 1-{_LABEL_MAX} characters")
        check_text(f"{field}[{i}]", value, max_length=_LABEL_MAX)
        if skus:
            check_sku(f"{field}[{i}]", value)
    return frozenset(v.strip() for v in values)


def promotion_from_pb(p: promotion_pb2.Promotion) -> Promotion:
    """A new promotion from CreatePromotion; ids and counters are the server's."""
    f = "promotion"
    code = p.code.strip().upper()
    if not _CODE.fullmatch(code):
        raise InvalidArgument(f"{f}.code", "must be 3-32 characters of A-Z 0-9 _ -")
    name = check_text(f"{f}.name", p.name, max_length=_NAME_MAX, required=True).strip()
    kind = PB_TYPES.get(p.type)
    if kind is None:
        raise InvalidArgument(f"{f}.type", "must be PERCENTAGE, FIXED_AMOUNT, FREE_SHIPPING or BUY_X_GET_Y")
    currency = checked_currency(f"{f}.currency_code", p.currency_code) if p.currency_code else ""

    if kind is PromotionType.PERCENTAGE:
        if not 1 <= p.percent_off <= 100:
            raise InvalidArgument(f"{f}.percent_off", "must be between 1 and 100")
    elif p.percent_off:
        raise InvalidArgument(f"{f}.percent_off", "is only for PERCENTAGE promotions")

    amount_off = 0
    if kind is PromotionType.FIXED_AMOUNT:
        if not p.HasField("amount_off"):
            raise InvalidArgument(f"{f}.amount_off", "is required for FIXED_AMOUNT promotions")
        off_currency = checked_currency(f"{f}.amount_off.currency_code", p.amount_off.currency_code)
        if currency and off_currency != currency:
            raise InvalidArgument(f"{f}.amount_off.currency_code", f"must match promotion.currency_code {currency}")
        check_amount(f"{f}.amount_off.amount_minor", p.amount_off.amount_minor, positive=True)
        currency, amount_off = off_currency, p.amount_off.amount_minor
    elif p.amount_off.amount_minor or p.amount_off.currency_code:
        raise InvalidArgument(f"{f}.amount_off", "is only for FIXED_AMOUNT promotions")

    min_subtotal = 0
    check_amount(f"{f}.min_subtotal.amount_minor", p.min_subtotal.amount_minor)
    if p.min_subtotal.amount_minor > 0:
        min_currency = checked_currency(f"{f}.min_subtotal.currency_code", p.min_subtotal.currency_code)
        if currency and min_currency != currency:
            raise InvalidArgument(f"{f}.min_subtotal.currency_code", f"must match the promotion's currency {currency}")
        currency, min_subtotal = min_currency, p.min_subtotal.amount_minor

    if p.usage_limit < 0:
        raise InvalidArgument(f"{f}.usage_limit", "must not be negative (0 means unlimited)")
    if p.usage_limit_per_customer < 0:
        raise InvalidArgument(f"{f}.usage_limit_per_customer", "must not be negative (0 means unlimited)")

    starts_at = checked_datetime(f"{f}.starts_at", p.starts_at) if p.HasField("starts_at") else None
    ends_at = checked_datetime(f"{f}.ends_at", p.ends_at) if p.HasField("ends_at") else None
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise InvalidArgument(f"{f}.ends_at", "must be after promotion.starts_at")

    c = p.conditions
    cf = f"{f}.conditions"
    if kind is PromotionType.BUY_X_GET_Y:
        if not 1 <= c.buy_quantity <= 1000:
            raise InvalidArgument(f"{cf}.buy_quantity", "must be between 1 and 1000")
        if not 1 <= c.get_quantity <= 1000:
            raise InvalidArgument(f"{cf}.get_quantity", "must be between 1 and 1000")
    elif c.buy_quantity or c.get_quantity:
        field = f"{cf}.buy_quantity" if c.buy_quantity else f"{cf}.get_quantity"
        raise InvalidArgument(field, "is only for BUY_X_GET_Y promotions")
    conditions = Conditions(
        skus=_labels(f"{cf}.skus", c.skus, skus=True),
        categories=_labels(f"{cf}.categories", c.categories),
        brands=_labels(f"{cf}.brands", c.brands),
        buy_quantity=c.buy_quantity,
        get_quantity=c.get_quantity,
    )
    return Promotion(
        promotion_id="",
        code=code,
        name=name,
        type=kind,
        percent_off=p.percent_off,
        amount_off_minor=amount_off,
        currency_code=currency,
        usage_limit=p.usage_limit,
        usage_limit_per_customer=p.usage_limit_per_customer,
        min_subtotal_minor=min_subtotal,
        starts_at=starts_at,
        ends_at=ends_at,
        combinable=p.combinable,
        conditions=conditions,
    )
