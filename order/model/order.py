"""The order aggregate: a price snapshot of what the customer bought, and where it stands.

Pure value objects (no I/O). Amounts are :class:`infra.money.Money` in minor units.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from infra.address import Address
from infra.money import Money

__all__ = [
    "Address",
    "NewOrder",
    "Order",
    "OrderDiscount",
    "OrderLine",
    "OrderStatus",
    "PaymentOutcome",
    "StatusChange",
    "Totals",
]


class OrderStatus(StrEnum):
    """Stored as the name (the proto enum value without its ORDER_STATUS_ prefix)."""

    PENDING_PAYMENT = "PENDING_PAYMENT"
    CONFIRMED = "CONFIRMED"
    AWAITING_SHIPMENT = "AWAITING_SHIPMENT"
    PACKED = "PACKED"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"
    PAYMENT_FAILED = "PAYMENT_FAILED"


class PaymentOutcome(StrEnum):
    """What the payment step reported (RecordPayment, or a payment event for async methods)."""

    CAPTURED = "CAPTURED"
    CASH_ON_DELIVERY = "CASH_ON_DELIVERY"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class OrderLine:
    sku: str
    name: str
    quantity: int
    unit_price: Money
    line_total: Money
    warehouse_id: str
    tax_class: str


@dataclass(frozen=True, slots=True)
class OrderDiscount:
    code: str
    amount: Money


@dataclass(frozen=True, slots=True)
class Totals:
    subtotal: Money
    discount_total: Money
    shipping_total: Money
    tax_total: Money
    grand_total: Money


@dataclass(frozen=True, slots=True)
class NewOrder:
    """What checkout asks to be recorded; validated and its totals verified before anything is written."""

    checkout_session_id: str
    customer_id: str
    email: str
    lines: tuple[OrderLine, ...]
    discounts: tuple[OrderDiscount, ...]
    totals: Totals
    shipping_address: Address | None
    billing_address: Address | None
    shipping_method: str
    payment_id: str
    payment_method: str
    notes: str
    # What the payment service holds for this order (zero when nothing needs paying); None: not sent.
    authorized_amount: Money | None

    @property
    def currency_code(self) -> str:
        """The order's currency is the grand total's; every other amount must be in it."""
        return self.totals.grand_total.currency_code


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    checkout_session_id: str
    customer_id: str
    email: str
    status: OrderStatus
    lines: tuple[OrderLine, ...]
    discounts: tuple[OrderDiscount, ...]
    totals: Totals
    shipping_address: Address | None
    billing_address: Address | None
    shipping_method: str
    payment_id: str
    payment_method: str
    payment_outcome: PaymentOutcome | None
    notes: str
    tracking_number: str
    created_at: datetime
    updated_at: datetime

    def visible_to(self, subject: str, *, privileged: bool) -> bool:
        """Customers see only their own orders; admins and Kassa's services see all."""
        return privileged or self.customer_id == subject


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One entry of an order's timeline."""

    status: OrderStatus
    cause: str
    occurred_at: datetime
