"""Validation of a new order: every refusal names the request field (DESIGN.md §4.6).

Pure. :func:`validate_new_order` checks the fields one by one (text by the shared rule of
:mod:`infra.validation`: no control characters, a length cap; amounts at most MAX_AMOUNT_MINOR), then
:func:`verify_totals` recomputes the totals from the lines and discounts and refuses the first
inconsistent total, so an order is never stored with amounts that do not add up, and
:func:`verify_authorized_amount` refuses an order whose payment holds another amount than that grand
total (DESIGN.md §3 step 7).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from infra.errors import FailedPrecondition, InvalidArgument, Reason
from infra.money import Money, validate_currency
from infra.validation import MAX_AMOUNT_MINOR, check_text
from order.model.order import Address, NewOrder, Totals

__all__ = [
    "SHIPPING_METHODS",
    "Limits",
    "recompute_totals",
    "validate_new_order",
    "verify_authorized_amount",
    "verify_totals",
]

SHIPPING_METHODS = frozenset({"standard", "express"})
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_MAX_ID = 128
_MAX_TEXT = 200
_MAX_NOTES = 1000
# What the services upstream accept, so an order they let through is never refused here at step 7 (after the
# payment is authorized): an email (RFC 5321, checkout's cap), a warehouse id (warehouse's cap), a payment
# method (checkout's and payment's cap).
_MAX_EMAIL = 254
_MAX_WAREHOUSE_ID = 200
_MAX_PAYMENT_METHOD = 255


@dataclass(frozen=True, slots=True)
class Limits:
    max_lines: int = 100
    max_quantity: int = 999
    # Checkout applies at most 5 codes; a few more leave room without leaving the count open.
    max_discounts: int = 20


def _require_text(field: str, value: str, *, max_len: int = _MAX_ID) -> None:
    check_text(field, value, max_length=max_len, required=True)


def _optional_text(field: str, value: str, *, max_len: int = _MAX_ID) -> None:
    check_text(field, value, max_length=max_len)


def _check_money(field: str, money: Money, currency: str) -> None:
    if money.currency_code != currency:
        raise InvalidArgument(
            f"{field}.currency_code",
            f"must be {currency}, the order currency (got {money.currency_code or 'nothing'})",
            reason=Reason.CURRENCY_MISMATCH,
        )
    if money.amount_minor < 0:
        raise InvalidArgument(f"{field}.amount_minor", "must not be negative")
    if money.amount_minor > MAX_AMOUNT_MINOR:
        raise InvalidArgument(f"{field}.amount_minor", f"must be at most {MAX_AMOUNT_MINOR:,}")


def _check_address(field: str, address: Address) -> None:
    for name in ("name", "line1", "city"):
        _require_text(f"{field}.{name}", getattr(address, name), max_len=_MAX_TEXT)
    for name in ("line2", "region", "postal_code", "phone"):
        _optional_text(f"{field}.{name}", getattr(address, name), max_len=_MAX_TEXT)
    if not _COUNTRY.fullmatch(address.country_code):
        raise InvalidArgument(f"{field}.country_code", "must be an ISO 3166-1 alpha-2 code such as US")


def validate_new_order(order: NewOrder, limits: Limits) -> None:
    """Refuse the first invalid field, then the first inconsistent total."""
    _require_text("checkout_session_id", order.checkout_session_id)
    _require_text("customer_id", order.customer_id)
    if order.email and (len(order.email) > _MAX_EMAIL or not _EMAIL.fullmatch(order.email)):
        raise InvalidArgument("email", "must be an e-mail address")
    _optional_text("email", order.email, max_len=_MAX_EMAIL)
    currency = order.currency_code
    problem = validate_currency(currency)
    if problem:
        raise InvalidArgument("totals.grand_total.currency_code", problem)
    if not order.lines:
        raise InvalidArgument("lines", "an order needs at least one line")
    if len(order.lines) > limits.max_lines:
        raise InvalidArgument("lines", f"at most {limits.max_lines} lines")
    for i, line in enumerate(order.lines):
        _require_text(f"lines[{i}].sku", line.sku)
        _optional_text(f"lines[{i}].name", line.name, max_len=_MAX_TEXT)
        _optional_text(f"lines[{i}].warehouse_id", line.warehouse_id, max_len=_MAX_WAREHOUSE_ID)
        _optional_text(f"lines[{i}].tax_class", line.tax_class)
        if not 1 <= line.quantity <= limits.max_quantity:
            raise InvalidArgument(f"lines[{i}].quantity", f"must be between 1 and {limits.max_quantity}")
        _check_money(f"lines[{i}].unit_price", line.unit_price, currency)
        _check_money(f"lines[{i}].line_total", line.line_total, currency)
        if line.line_total != line.unit_price.times(line.quantity):
            raise InvalidArgument(
                f"lines[{i}].line_total", f"must be unit_price * quantity = {line.unit_price.times(line.quantity)}"
            )
    if len(order.discounts) > limits.max_discounts:
        raise InvalidArgument("discounts", f"at most {limits.max_discounts} discounts")
    for i, discount in enumerate(order.discounts):
        _require_text(f"discounts[{i}].code", discount.code)
        _check_money(f"discounts[{i}].amount", discount.amount, currency)
    for name in ("subtotal", "discount_total", "shipping_total", "tax_total", "grand_total"):
        _check_money(f"totals.{name}", getattr(order.totals, name), currency)
    if order.authorized_amount is None:
        raise InvalidArgument(
            "authorized_amount", "is required: what the payment holds for this order (zero when nothing is due)"
        )
    _check_money("authorized_amount", order.authorized_amount, currency)
    if order.shipping_address is None:
        raise InvalidArgument("shipping_address", "is required")
    _check_address("shipping_address", order.shipping_address)
    if order.billing_address is not None:
        _check_address("billing_address", order.billing_address)
    if order.shipping_method not in SHIPPING_METHODS:
        raise InvalidArgument("shipping_method", f"must be one of {', '.join(sorted(SHIPPING_METHODS))}")
    _optional_text("payment_id", order.payment_id)
    if order.totals.grand_total.amount_minor or order.payment_method:
        # A zero-total order (a 100% coupon and free shipping) needs no payment method.
        _require_text("payment_method", order.payment_method, max_len=_MAX_PAYMENT_METHOD)
    check_text("notes", order.notes, max_length=_MAX_NOTES, multiline=True)
    verify_totals(order)
    verify_authorized_amount(order)


def recompute_totals(order: NewOrder) -> Totals:
    """The totals the lines and discounts imply; shipping and tax are taken as quoted.

    subtotal = Σ line totals, discount_total = Σ discounts,
    grand_total = subtotal - discount_total + shipping_total + tax_total. Integer minor units only,
    so there is no rounding here: the rounding happened upstream (pricing, promotion) and is
    captured in the line totals and discount amounts this sums.
    """
    currency = order.currency_code
    subtotal = sum((line.line_total for line in order.lines), Money.zero(currency))
    discount_total = sum((d.amount for d in order.discounts), Money.zero(currency))
    shipping, tax = order.totals.shipping_total, order.totals.tax_total
    return Totals(
        subtotal=subtotal,
        discount_total=discount_total,
        shipping_total=shipping,
        tax_total=tax,
        grand_total=subtotal - discount_total + shipping + tax,
    )


def verify_totals(order: NewOrder) -> None:
    """Refuse the first total that differs from its recomputation, naming it."""
    expected = recompute_totals(order)
    given = order.totals
    if given.subtotal != expected.subtotal:
        raise InvalidArgument("totals.subtotal", f"must be the sum of the line totals, {expected.subtotal}")
    if given.discount_total != expected.discount_total:
        raise InvalidArgument("totals.discount_total", f"must be the sum of the discounts, {expected.discount_total}")
    if expected.discount_total.amount_minor > (expected.subtotal + expected.shipping_total).amount_minor:
        raise InvalidArgument("totals.discount_total", "must not exceed subtotal plus shipping")
    if given.grand_total != expected.grand_total:
        raise InvalidArgument(
            "totals.grand_total",
            f"must be subtotal - discount_total + shipping_total + tax_total = {expected.grand_total}",
        )


def verify_authorized_amount(order: NewOrder) -> None:
    """Refuse an order whose payment holds anything but its recomputed grand total.

    A FailedPrecondition (PAYMENT_AMOUNT_MISMATCH), not an InvalidArgument: the request is well formed,
    but the money held does not match the order, and the caller must void the authorization.
    """
    expected = recompute_totals(order).grand_total
    authorized = order.authorized_amount
    if authorized != expected:
        raise FailedPrecondition(
            f"the payment holds {authorized}, but the order's grand total is {expected}",
            reason=Reason.PAYMENT_AMOUNT_MISMATCH,
            metadata={
                "authorized_minor": str(authorized.amount_minor if authorized else ""),
                "grand_total_minor": str(expected.amount_minor),
                "currency_code": expected.currency_code,
            },
        )
