"""Payloads of the events the order service publishes on ``kassa.order.<EventType>``.

Every event carries enough for its consumers to act without calling back: the ids
(order, checkout session, customer, payment), the status, the grand total and the lines
(warehouse confirms or releases stock by them, payment captures or refunds by the payment id).
"""

from __future__ import annotations

from typing import Any

from kernel.money import Money
from order.model.order import Order, OrderStatus

__all__ = ["EVENT_FOR_STATUS", "ORDER_CREATED", "event_data"]

ORDER_CREATED = "OrderCreated"

# The event type published when an order enters a status.
EVENT_FOR_STATUS: dict[OrderStatus, str] = {
    OrderStatus.CONFIRMED: "OrderConfirmed",
    OrderStatus.AWAITING_SHIPMENT: "OrderConfirmed",
    OrderStatus.PAYMENT_FAILED: "OrderPaymentFailed",
    OrderStatus.CANCELLED: "OrderCancelled",
    OrderStatus.PACKED: "OrderPacked",
    OrderStatus.SHIPPED: "OrderShipped",
    OrderStatus.DELIVERED: "OrderDelivered",
}


def _money(m: Money) -> dict[str, Any]:
    return {"currency_code": m.currency_code, "amount_minor": m.amount_minor}


def event_data(order: Order, cause: str) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "checkout_session_id": order.checkout_session_id,
        "customer_id": order.customer_id,
        "status": order.status.value,
        "cause": cause,
        "payment_id": order.payment_id,
        "payment_method": order.payment_method,
        "payment_outcome": order.payment_outcome.value if order.payment_outcome else None,
        "payment_status": order.payment_status.value,
        "tracking_number": order.tracking_number,
        "carrier": order.carrier,
        "grand_total": _money(order.totals.grand_total),
        "lines": [
            {
                "sku": line.sku,
                "quantity": line.quantity,
                "warehouse_id": line.warehouse_id,
                "unit_price": _money(line.unit_price),
                "line_total": _money(line.line_total),
            }
            for line in order.lines
        ],
    }
