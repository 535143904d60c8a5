"""The checks of the order service's requests, run by the servicer before the use case: every refusal names
the request field (DESIGN.md §4.6), and nothing is written for a bad request.

The shared field rules (text, email, country code, address, amounts) are :mod:`kernel.validation`'s; the rules
an order's totals obey whoever places it are the model's (:mod:`order.model.totals`), applied by CreateOrder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from kernel.errors import InvalidArgument, Reason
from kernel.money import Money, validate_currency
from kernel.validation import check_address, check_amount, check_email, check_shipping_method, check_text, check_uuid
from order.model.order import NewOrder, OrderStatus, PaymentOutcome
from order.model.status import FULFILMENT_STATUSES

__all__ = [
    "Limits",
    "check_order_id",
    "validate_cancel",
    "validate_fulfillment",
    "validate_list_orders",
    "validate_new_order",
    "validate_record_payment",
]

_MAX_ID = 128
_MAX_TEXT = 200
_MAX_NOTES = 1000
_MAX_REASON = 500
_MAX_CUSTOMER_ID = 128
_MAX_TRACKING = 128
_MAX_CARRIER = 64
# What the services upstream accept, so an order they let through is never refused here at step 7 (after the
# payment is authorized): a warehouse id (warehouse's cap), a payment method (checkout's and payment's cap).
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
    check_amount(f"{field}.amount_minor", money.amount_minor)


def validate_new_order(order: NewOrder, limits: Limits) -> NewOrder:
    """Refuse the first invalid field of a CreateOrder request (its totals are checked by CreateOrder); the
    order as it is to be placed: its email (optional) without surrounding spaces, as the shared rule reads it."""
    _require_text("checkout_session_id", order.checkout_session_id)
    _require_text("customer_id", order.customer_id)
    email = check_email("email", order.email) if order.email else ""
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
    check_address("shipping_address", order.shipping_address, max_length=_MAX_TEXT)
    if order.billing_address is not None:
        check_address("billing_address", order.billing_address, max_length=_MAX_TEXT)
    check_shipping_method("shipping_method", order.shipping_method)
    _optional_text("payment_id", order.payment_id)
    if order.totals.grand_total.amount_minor or order.payment_method:
        # A zero-total order (a 100% coupon and free shipping) needs no payment method.
        _require_text("payment_method", order.payment_method, max_len=_MAX_PAYMENT_METHOD)
    check_text("notes", order.notes, max_length=_MAX_NOTES, multiline=True)
    return order if email == order.email else dataclasses.replace(order, email=email)


def check_order_id(value: str) -> str:
    """The request's ``order_id``, in its canonical form."""
    return check_uuid("order_id", value)


def validate_list_orders(customer_id: str) -> None:
    check_text("customer_id", customer_id, max_length=_MAX_CUSTOMER_ID)


def validate_cancel(reason: str) -> None:
    check_text("reason", reason, max_length=_MAX_REASON, multiline=True)


def validate_record_payment(outcome: PaymentOutcome | None, payment_id: str, cause: str) -> PaymentOutcome:
    if outcome is None:
        raise InvalidArgument("outcome", "must be CAPTURED, AUTHORIZED, CASH_ON_DELIVERY or FAILED")
    check_text("payment_id", payment_id, max_length=_MAX_ID)
    check_text("cause", cause, max_length=_MAX_REASON, multiline=True)
    return outcome


def validate_fulfillment(target: OrderStatus | None, tracking_number: str, carrier: str) -> OrderStatus:
    """One fulfilment step: SHIPPED needs its carrier and tracking number; the other steps take neither."""
    check_text("tracking_number", tracking_number, max_length=_MAX_TRACKING)
    check_text("carrier", carrier, max_length=_MAX_CARRIER)
    if target is None or target not in FULFILMENT_STATUSES:
        raise InvalidArgument("status", "must be PACKED, SHIPPED or DELIVERED")
    if target is OrderStatus.SHIPPED:
        if not tracking_number.strip():
            raise InvalidArgument("tracking_number", "is required to ship an order")
        if not carrier.strip():
            raise InvalidArgument("carrier", "is required to ship an order")
    else:
        for name, value in (("tracking_number", tracking_number), ("carrier", carrier)):
            if value:
                raise InvalidArgument(name, "is only given with SHIPPED")
    return target
