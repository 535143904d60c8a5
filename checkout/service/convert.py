"""Protobuf ↔ domain conversions for the checkout servicers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from checkout.model.cart import Cart, PriceChange
from checkout.model.catalog import Address
from checkout.model.session import ConfirmResult, Preview, Session, SessionLine
from infra.pb import address_from_pb, address_to_pb, money_to_pb, timestamp_to_pb, window_to_pb
from kassa.checkout.v1 import cart_pb2, checkout_pb2, checkout_service_pb2
from kassa.common.v1 import address_pb2, money_pb2
from kassa.order.v1 import order_pb2
from kassa.payment.v1 import payment_pb2
from kernel.money import Money

__all__ = [
    "cart_to_pb",
    "confirm_result_to_pb",
    "preview_to_pb",
    "price_change_to_pb",
    "session_to_pb",
    "stripped_address_from_pb",
]


def _money(currency: str, amount: int) -> money_pb2.Money:
    return money_to_pb(Money(currency, amount))


def stripped_address_from_pb(pb: address_pb2.Address) -> Address:
    """A customer-entered address: the plain conversion, surrounding white space stripped from every field."""
    return Address(**{name: value.strip() for name, value in address_from_pb(pb).to_dict().items()})


def cart_to_pb(cart: Cart) -> cart_pb2.Cart:
    cur = cart.currency_code
    return cart_pb2.Cart(
        cart_id=cart.cart_id,
        customer_id=cart.customer_id,
        status=cast(cart_pb2.CartStatus, cart_pb2.CartStatus.Value(f"CART_STATUS_{cart.status.value}")),
        currency_code=cur,
        items=[
            cart_pb2.CartItem(
                sku=i.sku,
                name=i.name,
                quantity=i.quantity,
                unit_price=_money(cur, i.unit_price_minor),
                line_total=_money(cur, i.line_total_minor),
            )
            for i in cart.items
        ],
        subtotal=_money(cur, cart.subtotal.amount_minor),
        created_at=timestamp_to_pb(cart.created_at),
        updated_at=timestamp_to_pb(cart.updated_at),
    )


def price_change_to_pb(change: PriceChange) -> checkout_pb2.PriceChange:
    return checkout_pb2.PriceChange(
        sku=change.sku,
        old_price=money_to_pb(change.old_price),
        new_price=money_to_pb(change.new_price),
    )


def _line(line: SessionLine, cur: str) -> checkout_pb2.SessionLine:
    return checkout_pb2.SessionLine(
        sku=line.sku,
        name=line.name,
        quantity=line.quantity,
        unit_price=_money(cur, line.unit_price_minor),
        line_total=_money(cur, line.line_total_minor),
        warehouse_id=line.warehouse_id,
    )


def preview_to_pb(preview: Preview) -> checkout_pb2.OrderPreview:
    cur = preview.currency_code
    return checkout_pb2.OrderPreview(
        lines=[_line(ln, cur) for ln in preview.lines],
        subtotal=_money(cur, preview.subtotal_minor),
        discount_total=_money(cur, preview.discount_minor),
        shipping_total=_money(cur, preview.shipping_minor),
        tax_total=_money(cur, preview.tax_minor),
        grand_total=_money(cur, preview.grand_total_minor),
        discounts=[
            checkout_pb2.AppliedDiscount(code=d.code, amount=_money(cur, d.amount_minor)) for d in preview.discounts
        ],
        rejected_codes=[
            checkout_pb2.RejectedCode(code=code, reason=reason, message=message)
            for code, reason, message in preview.rejected
        ],
        # Counted from today: what the customer would see if they ordered now.
        delivery_window=window_to_pb(preview.delivery, datetime.now(UTC).date()),
    )


def session_to_pb(session: Session) -> checkout_pb2.CheckoutSession:
    cur = session.currency_code
    return checkout_pb2.CheckoutSession(
        session_id=session.session_id,
        cart_id=session.cart_id,
        customer_id=session.customer_id,
        status=cast(
            checkout_pb2.SessionStatus, checkout_pb2.SessionStatus.Value(f"SESSION_STATUS_{session.status.value}")
        ),
        currency_code=cur,
        email=session.email,
        shipping_address=address_to_pb(session.shipping_address),
        billing_address=address_to_pb(session.billing_address),
        shipping_method=session.shipping_method,
        payment_method=session.payment_method,
        promotion_codes=session.promotion_codes,
        notes=session.notes,
        lines=[_line(ln, cur) for ln in session.lines],
        preview=preview_to_pb(session.preview) if session.preview is not None else None,
        expires_at=timestamp_to_pb(session.expires_at),
        order_id=session.order_id,
        created_at=timestamp_to_pb(session.created_at),
        updated_at=timestamp_to_pb(session.updated_at),
    )


def confirm_result_to_pb(result: ConfirmResult) -> checkout_service_pb2.ConfirmCheckoutResponse:
    return checkout_service_pb2.ConfirmCheckoutResponse(
        order_id=result.order_id,
        order_status=cast(order_pb2.OrderStatus, order_pb2.OrderStatus.Value(f"ORDER_STATUS_{result.order_status}")),
        payment_status=cast(
            payment_pb2.PaymentStatus, payment_pb2.PaymentStatus.Value(f"PAYMENT_STATUS_{result.payment_status}")
        ),
        next_action_url=result.next_action_url,
        grand_total=_money(result.currency_code, result.grand_total_minor),
    )
