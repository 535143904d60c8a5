"""The order aggregate: a price snapshot of what the customer bought, and where it stands.

Pure value objects (no I/O). Amounts are :class:`kernel.money.Money` in minor units. The email and the
notes are personal data: left out of the ``repr`` (addresses hide theirs), so no log line or traceback
shows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from kernel.address import Address
from kernel.delivery import DeliveryWindow
from kernel.money import Money

__all__ = [
    "CASH_ON_DELIVERY_METHOD",
    "Address",
    "DeliveryWindow",
    "NewOrder",
    "Order",
    "OrderDiscount",
    "OrderLine",
    "OrderStatus",
    "PaymentOutcome",
    "PaymentStatus",
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
    # Authorized only: captured when the order ships (capture on shipment).
    AUTHORIZED = "AUTHORIZED"


class PaymentStatus(StrEnum):
    """The order's payment as the order service last learned it from payment events (DESIGN.md §3).

    Stored as the name of the ``kassa.payment.v1.PaymentStatus`` value without its PAYMENT_STATUS_
    prefix. UNSPECIFIED until an event says (or nothing is to be paid); :mod:`order.model.payment_status`
    decides which reports move it.
    """

    UNSPECIFIED = "UNSPECIFIED"
    PENDING = "PENDING"
    REQUIRES_ACTION = "REQUIRES_ACTION"
    AUTHORIZED = "AUTHORIZED"
    CAPTURED = "CAPTURED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"
    VOIDED = "VOIDED"
    DECLINED = "DECLINED"
    FAILED = "FAILED"
    CASH_ON_DELIVERY = "CASH_ON_DELIVERY"


# The payment method that selects cash on delivery (DESIGN.md §2).
CASH_ON_DELIVERY_METHOD = "cod"


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
    email: str = field(repr=False)
    lines: tuple[OrderLine, ...]
    discounts: tuple[OrderDiscount, ...]
    totals: Totals
    shipping_address: Address | None
    billing_address: Address | None
    shipping_method: str
    payment_id: str
    payment_method: str
    notes: str = field(repr=False)
    # What the payment service holds for this order (zero when nothing needs paying); None: not sent.
    authorized_amount: Money | None
    # Business days its shipping method takes (as checkout was quoted); None: not known.
    delivery_window: DeliveryWindow | None = None

    @property
    def currency_code(self) -> str:
        """The order's currency is the grand total's; every other amount must be in it."""
        return self.totals.grand_total.currency_code

    @property
    def initial_payment_status(self) -> PaymentStatus:
        """Cash on delivery is known at once; whether a card payment is authorized or still waits for
        the customer (3-D Secure) only a payment event tells, so it starts UNSPECIFIED."""
        if self.payment_method == CASH_ON_DELIVERY_METHOD:
            return PaymentStatus.CASH_ON_DELIVERY
        return PaymentStatus.UNSPECIFIED


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    checkout_session_id: str
    customer_id: str
    email: str = field(repr=False)
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
    payment_status: PaymentStatus
    notes: str = field(repr=False)
    tracking_number: str
    created_at: datetime
    updated_at: datetime
    carrier: str = ""
    delivery_window: DeliveryWindow | None = None


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One entry of an order's timeline."""

    status: OrderStatus
    cause: str
    occurred_at: datetime
