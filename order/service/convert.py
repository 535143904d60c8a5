"""Protobuf ↔ model for the order service. No validation beyond shape: the request's checks are validation.py's."""

from __future__ import annotations

from datetime import UTC
from typing import cast

from infra.pb import address_from_pb, address_to_pb, money_from_pb, money_to_pb, timestamp_to_pb, window_to_pb
from kassa.common.v1 import delivery_pb2
from kassa.order.v1 import order_pb2, order_service_pb2
from kassa.payment.v1 import payment_pb2
from kernel.errors import InvalidArgument
from order.model.order import (
    DeliveryWindow,
    NewOrder,
    Order,
    OrderDiscount,
    OrderLine,
    OrderStatus,
    PaymentOutcome,
    StatusChange,
    Totals,
)

__all__ = [
    "new_order_from_pb",
    "order_to_pb",
    "outcome_from_pb",
    "status_change_to_pb",
    "status_from_pb",
]

_STATUS_PREFIX = "ORDER_STATUS_"
_OUTCOME_PREFIX = "PAYMENT_OUTCOME_"
_PAYMENT_STATUS_PREFIX = "PAYMENT_STATUS_"
# A delivery window is a few weeks at most; a bound keeps the date arithmetic and the column sane.
_MAX_DELIVERY_DAYS = 60


def status_from_pb(value: int) -> OrderStatus | None:
    name = order_pb2.OrderStatus.Name(value) if value in order_pb2.OrderStatus.values() else ""
    try:
        return OrderStatus(name.removeprefix(_STATUS_PREFIX))
    except ValueError:
        return None


def outcome_from_pb(value: int) -> PaymentOutcome | None:
    name = order_service_pb2.PaymentOutcome.Name(value) if value in order_service_pb2.PaymentOutcome.values() else ""
    try:
        return PaymentOutcome(name.removeprefix(_OUTCOME_PREFIX))
    except ValueError:
        return None


def new_order_from_pb(req: order_service_pb2.CreateOrderRequest) -> NewOrder:
    t = req.totals
    return NewOrder(
        checkout_session_id=req.checkout_session_id,
        customer_id=req.customer_id,
        email=req.email,
        lines=tuple(
            OrderLine(
                sku=line.sku,
                name=line.name,
                quantity=line.quantity,
                unit_price=money_from_pb(line.unit_price),
                line_total=money_from_pb(line.line_total),
                warehouse_id=line.warehouse_id,
                tax_class=line.tax_class,
            )
            for line in req.lines
        ),
        discounts=tuple(OrderDiscount(code=d.code, amount=money_from_pb(d.amount)) for d in req.discounts),
        totals=Totals(
            subtotal=money_from_pb(t.subtotal),
            discount_total=money_from_pb(t.discount_total),
            shipping_total=money_from_pb(t.shipping_total),
            tax_total=money_from_pb(t.tax_total),
            grand_total=money_from_pb(t.grand_total),
        ),
        shipping_address=address_from_pb(req.shipping_address) if req.HasField("shipping_address") else None,
        billing_address=address_from_pb(req.billing_address) if req.HasField("billing_address") else None,
        shipping_method=req.shipping_method,
        payment_id=req.payment_id,
        payment_method=req.payment_method,
        notes=req.notes,
        authorized_amount=money_from_pb(req.authorized_amount) if req.HasField("authorized_amount") else None,
        delivery_window=_window_from_pb(req),
    )


def _window_from_pb(req: order_service_pb2.CreateOrderRequest) -> DeliveryWindow | None:
    if not req.HasField("delivery_window"):
        return None
    w = req.delivery_window
    if w.min_business_days < 0:
        raise InvalidArgument("delivery_window.min_business_days", "must not be negative")
    if not w.min_business_days <= w.max_business_days <= _MAX_DELIVERY_DAYS:
        raise InvalidArgument(
            "delivery_window.max_business_days",
            f"need min_business_days <= max_business_days <= {_MAX_DELIVERY_DAYS}",
        )
    return DeliveryWindow(w.min_business_days, w.max_business_days)


def _window_to_pb(order: Order) -> delivery_pb2.DeliveryWindow | None:
    # Counted from the day the order was placed (UTC).
    return window_to_pb(order.delivery_window, order.created_at.astimezone(UTC).date())


def order_to_pb(order: Order) -> order_pb2.Order:
    t = order.totals
    return order_pb2.Order(
        order_id=order.order_id,
        checkout_session_id=order.checkout_session_id,
        customer_id=order.customer_id,
        email=order.email,
        status=cast(order_pb2.OrderStatus, order_pb2.OrderStatus.Value(_STATUS_PREFIX + order.status.value)),
        lines=[
            order_pb2.OrderLine(
                sku=line.sku,
                name=line.name,
                quantity=line.quantity,
                unit_price=money_to_pb(line.unit_price),
                line_total=money_to_pb(line.line_total),
                warehouse_id=line.warehouse_id,
                tax_class=line.tax_class,
            )
            for line in order.lines
        ],
        discounts=[order_pb2.OrderDiscount(code=d.code, amount=money_to_pb(d.amount)) for d in order.discounts],
        totals=order_pb2.OrderTotals(
            subtotal=money_to_pb(t.subtotal),
            discount_total=money_to_pb(t.discount_total),
            shipping_total=money_to_pb(t.shipping_total),
            tax_total=money_to_pb(t.tax_total),
            grand_total=money_to_pb(t.grand_total),
        ),
        shipping_address=address_to_pb(order.shipping_address),
        billing_address=address_to_pb(order.billing_address),
        shipping_method=order.shipping_method,
        payment_id=order.payment_id,
        payment_method=order.payment_method,
        payment_status=cast(
            payment_pb2.PaymentStatus,
            payment_pb2.PaymentStatus.Value(_PAYMENT_STATUS_PREFIX + order.payment_status.value),
        ),
        tracking_number=order.tracking_number,
        carrier=order.carrier,
        delivery_window=_window_to_pb(order),
        notes=order.notes,
        created_at=timestamp_to_pb(order.created_at),
        updated_at=timestamp_to_pb(order.updated_at),
    )


def status_change_to_pb(change: StatusChange) -> order_pb2.OrderEvent:
    return order_pb2.OrderEvent(
        status=cast(order_pb2.OrderStatus, order_pb2.OrderStatus.Value(_STATUS_PREFIX + change.status.value)),
        cause=change.cause,
        occurred_at=timestamp_to_pb(change.occurred_at),
    )
