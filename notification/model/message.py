"""What the notification service tells customers, and what it keeps about it. Pure, no I/O.

An order event becomes a :class:`Notice` (which message, for which order); the order as the order service
shows it becomes an :class:`OrderView`; both render into an :class:`OutgoingMessage` for a channel. The
recipient and the customer's name are personal data: left out of every ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from kernel.money import Money

__all__ = [
    "EVENT_KINDS",
    "PAYMENT_EVENT_KINDS",
    "Channel",
    "DeliveryWindow",
    "Kind",
    "MessageStatus",
    "Notice",
    "OrderLineView",
    "OrderView",
    "OutgoingMessage",
    "PaymentTerms",
    "Rendered",
    "SentMessage",
    "message_id_for",
    "payment_terms",
]


class Kind(StrEnum):
    CONFIRMATION = "confirmation"
    PAYMENT_FAILED = "payment_failed"
    CANCELLED = "cancelled"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    REFUNDED = "refunded"


# The order events a customer hears about, and the message each one sends.
EVENT_KINDS: dict[str, Kind] = {
    "OrderConfirmed": Kind.CONFIRMATION,
    "OrderPaymentFailed": Kind.PAYMENT_FAILED,
    "OrderCancelled": Kind.CANCELLED,
    "OrderShipped": Kind.SHIPPED,
    "OrderDelivered": Kind.DELIVERED,
}
# The payment events a customer hears about (a refund, full or partial, with its amount).
PAYMENT_EVENT_KINDS: dict[str, Kind] = {"PaymentRefunded": Kind.REFUNDED}


class Channel(StrEnum):
    """Each channel is one implementation of the sender port; SMS and push come later."""

    EMAIL = "email"


class MessageStatus(StrEnum):
    SENDING = "SENDING"
    SENT = "SENT"
    DEAD = "DEAD"


@dataclass(frozen=True, slots=True)
class Notice:
    """One order event that calls for a message. ``cause`` is the order's reason for its new status
    (why a payment failed, who cancelled), as the event says it; it never holds personal data."""

    event_id: str
    event_type: str
    kind: Kind
    order_id: str
    cause: str = ""
    # What a refund gave back.
    amount: Money | None = None
    # How the order's payment stood when it was confirmed (the event's payment_outcome: CAPTURED, AUTHORIZED for
    # capture on shipment, CASH_ON_DELIVERY); "" when the event does not say.
    payment_outcome: str = ""


@dataclass(frozen=True, slots=True)
class DeliveryWindow:
    earliest: date
    latest: date


@dataclass(frozen=True, slots=True)
class OrderLineView:
    sku: str
    name: str
    quantity: int
    unit_price: Money
    line_total: Money


@dataclass(frozen=True, slots=True)
class OrderView:
    """The order as the customer is shown it (from the order service's GetOrder)."""

    order_id: str
    email: str = field(repr=False)
    customer_name: str = field(repr=False)
    status: str
    currency_code: str
    lines: tuple[OrderLineView, ...]
    subtotal: Money
    discount_total: Money
    shipping_total: Money
    tax_total: Money
    grand_total: Money
    shipping_method: str
    payment_method: str
    carrier: str = ""
    tracking_number: str = ""
    delivery_window: DeliveryWindow | None = None


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str = field(repr=False)
    html: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A rendered message for one recipient. ``message_id`` is the email's Message-ID: the same for every
    attempt at the same notice, so a resend after a crash is recognisably the same message."""

    message_id: str
    recipient: str = field(repr=False)
    subject: str
    text: str = field(repr=False)
    html: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A message as the notification service keeps it (the recipient masked)."""

    message_id: str
    event_id: str
    event_type: str
    order_id: str
    kind: str
    channel: str
    recipient_masked: str
    subject: str
    status: MessageStatus
    attempts: int
    last_error: str
    created_at: datetime
    sent_at: datetime | None


class PaymentTerms(StrEnum):
    """What the confirmation tells the customer about the money."""

    PAID = "paid"  # captured at checkout
    AUTHORIZED = "authorized"  # held on the card, captured when the order ships (KASSA_CAPTURE_ON=shipment)
    CASH_ON_DELIVERY = "cash_on_delivery"  # nothing charged; paid to the courier
    NOTHING_TO_PAY = "nothing_to_pay"
    UNKNOWN = "unknown"  # an event that does not say: no claim about the money either way


CASH_ON_DELIVERY_METHOD = "cod"


def payment_terms(notice: Notice, order: OrderView) -> PaymentTerms:
    """From the confirming event's payment outcome (not the order's payment status, which may still lag
    behind payment's events), so a card that was only authorized is never called paid."""
    outcome = notice.payment_outcome
    if outcome == "CASH_ON_DELIVERY" or order.payment_method == CASH_ON_DELIVERY_METHOD:
        return PaymentTerms.CASH_ON_DELIVERY
    if order.grand_total.amount_minor == 0:
        return PaymentTerms.NOTHING_TO_PAY
    if outcome == "AUTHORIZED":
        return PaymentTerms.AUTHORIZED
    if outcome == "CAPTURED":
        return PaymentTerms.PAID
    return PaymentTerms.UNKNOWN


def message_id_for(notice: Notice, domain: str) -> str:
    """The RFC 5322 Message-ID of ``notice``'s message: one per (event, kind), stable across attempts."""
    return f"<{notice.event_id}.{notice.kind.value}@{domain}>"
