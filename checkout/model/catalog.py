"""What checkout learns from and sends to the other services, in domain terms (no protobuf)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from kernel.address import Address
from kernel.delivery import DeliveryWindow
from kernel.money import Money

__all__ = [
    "Address",
    "AppliedPromotion",
    "AuthorizeRequest",
    "CatalogEntry",
    "CatalogPage",
    "DeliveryWindow",
    "OrderDraft",
    "OrderLine",
    "OrderRef",
    "OrderStatus",
    "Parcel",
    "Payment",
    "PaymentOutcome",
    "PaymentStatus",
    "Product",
    "ProductsResult",
    "PromotionLine",
    "PromotionResult",
    "RejectedPromotion",
    "Reservation",
    "Reservations",
    "ReserveLine",
    "ShippingQuote",
    "TaxLine",
    "window_from_list",
]


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    name: str
    category: str
    brand: str
    weight_grams: int
    tax_class: str
    unit_price: Money


@dataclass(frozen=True, slots=True)
class ProductsResult:
    products: dict[str, Product]
    missing_skus: list[str]


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """A product of pricing's catalog with every price it has (minor units by currency), as a sync sends it."""

    sku: str
    name: str
    category: str
    brand: str
    weight_grams: int
    tax_class: str
    prices: dict[str, int]

    def priced(self, currency_code: str) -> Product | None:
        """The product at its price in ``currency_code``; None without one (pricing calls that sku missing)."""
        amount = self.prices.get(currency_code)
        if amount is None:
            return None
        unit_price = Money(currency_code, amount)
        return Product(self.sku, self.name, self.category, self.brand, self.weight_grams, self.tax_class, unit_price)


@dataclass(frozen=True, slots=True)
class CatalogPage:
    """One page of a sync of pricing's catalog (PricingService.SyncProducts)."""

    entries: list[CatalogEntry]
    # Set while the sync has more pages.
    next_page_token: str
    # Set on its last page: where the next sync starts.
    next_sync_token: str


@dataclass(frozen=True, slots=True)
class OrderQuote:
    """Products, shipping and tax in one answer (tax on the lines and shipping less the discounts asked with, if
    any); no totals when a sku is missing."""

    products: ProductsResult
    shipping: Money | None
    tax: Money | None
    # Business days the shipping method takes (None: pricing did not say).
    delivery: DeliveryWindow | None = None


@dataclass(frozen=True, slots=True)
class ShippingQuote:
    total: Money
    delivery: DeliveryWindow | None = None


@dataclass(frozen=True, slots=True)
class ReserveLine:
    sku: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Reservation:
    sku: str
    warehouse_id: str
    quantity: int
    origin: Address


@dataclass(frozen=True, slots=True)
class Reservations:
    reservations: list[Reservation]
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Parcel:
    warehouse_id: str
    origin: Address
    weight_grams: int


@dataclass(frozen=True, slots=True)
class TaxLine:
    sku: str
    tax_class: str
    amount: Money


@dataclass(frozen=True, slots=True)
class PromotionLine:
    sku: str
    category: str
    brand: str
    quantity: int
    unit_price: Money


@dataclass(frozen=True, slots=True)
class AppliedPromotion:
    code: str
    discount: Money
    free_shipping: bool = False


@dataclass(frozen=True, slots=True)
class RejectedPromotion:
    code: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class PromotionResult:
    applied: list[AppliedPromotion] = field(default_factory=list)
    rejected: list[RejectedPromotion] = field(default_factory=list)
    free_shipping: bool = False


class PaymentStatus(StrEnum):
    """kassa.payment.v1.PaymentStatus without its prefix."""

    UNSPECIFIED = "UNSPECIFIED"
    REQUIRES_ACTION = "REQUIRES_ACTION"
    AUTHORIZED = "AUTHORIZED"
    CAPTURED = "CAPTURED"
    VOIDED = "VOIDED"
    DECLINED = "DECLINED"
    FAILED = "FAILED"
    REFUNDED = "REFUNDED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    CASH_ON_DELIVERY = "CASH_ON_DELIVERY"
    PENDING = "PENDING"


class OrderStatus(StrEnum):
    """kassa.order.v1.OrderStatus without its prefix."""

    UNSPECIFIED = "UNSPECIFIED"
    PENDING_PAYMENT = "PENDING_PAYMENT"
    CONFIRMED = "CONFIRMED"
    AWAITING_SHIPMENT = "AWAITING_SHIPMENT"
    PACKED = "PACKED"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"
    PAYMENT_FAILED = "PAYMENT_FAILED"


class PaymentOutcome(StrEnum):
    """kassa.order.v1.PaymentOutcome without its prefix."""

    CAPTURED = "CAPTURED"
    CASH_ON_DELIVERY = "CASH_ON_DELIVERY"
    FAILED = "FAILED"
    # Authorized at checkout, captured when the order ships (capture on shipment).
    AUTHORIZED = "AUTHORIZED"


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    idempotency_key: str
    order_ref: str
    amount: Money
    payment_method: str
    customer_id: str
    customer_email: str

    def to_dict(self) -> dict[str, object]:
        return {
            "idempotency_key": self.idempotency_key,
            "order_ref": self.order_ref,
            "currency_code": self.amount.currency_code,
            "amount_minor": self.amount.amount_minor,
            "payment_method": self.payment_method,
            "customer_id": self.customer_id,
            "customer_email": self.customer_email,
        }

    @staticmethod
    def from_dict(data: dict[str, object]) -> AuthorizeRequest:
        return AuthorizeRequest(
            idempotency_key=str(data["idempotency_key"]),
            order_ref=str(data["order_ref"]),
            amount=Money(str(data["currency_code"]), int(data["amount_minor"])),  # type: ignore[call-overload]
            payment_method=str(data["payment_method"]),
            customer_id=str(data["customer_id"]),
            customer_email=str(data["customer_email"]),
        )


@dataclass(frozen=True, slots=True)
class Payment:
    payment_id: str
    status: PaymentStatus
    next_action_url: str = ""
    failure_code: str = ""
    # What the payment service holds (authorized) for it, in the payment's currency.
    amount_minor: int = 0


@dataclass(frozen=True, slots=True)
class OrderLine:
    sku: str
    name: str
    quantity: int
    unit_price_minor: int
    warehouse_id: str
    tax_class: str


@dataclass(frozen=True, slots=True)
class OrderDraft:
    """Everything CreateOrder needs; stored in the saga state so a recovery can resend it unchanged."""

    checkout_session_id: str
    customer_id: str
    email: str
    currency_code: str
    lines: list[OrderLine]
    discounts: list[tuple[str, int]]
    subtotal_minor: int
    discount_minor: int
    shipping_minor: int
    tax_minor: int
    grand_total_minor: int
    shipping_address: Address
    billing_address: Address | None
    shipping_method: str
    payment_id: str
    payment_method: str
    notes: str
    # What the payment service authorized; the order service refuses the order unless it equals the
    # grand total it recomputes (zero when nothing needs paying).
    authorized_minor: int = 0
    # Business days quoted for the shipping method; the order works out the dates from when it is placed.
    delivery: DeliveryWindow | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "delivery": _window_list(self.delivery),
            "authorized_minor": self.authorized_minor,
            "checkout_session_id": self.checkout_session_id,
            "customer_id": self.customer_id,
            "email": self.email,
            "currency_code": self.currency_code,
            "lines": [
                {
                    "sku": ln.sku,
                    "name": ln.name,
                    "quantity": ln.quantity,
                    "unit_price_minor": ln.unit_price_minor,
                    "warehouse_id": ln.warehouse_id,
                    "tax_class": ln.tax_class,
                }
                for ln in self.lines
            ],
            "discounts": [list(d) for d in self.discounts],
            "subtotal_minor": self.subtotal_minor,
            "discount_minor": self.discount_minor,
            "shipping_minor": self.shipping_minor,
            "tax_minor": self.tax_minor,
            "grand_total_minor": self.grand_total_minor,
            "shipping_address": self.shipping_address.to_dict(),
            "billing_address": self.billing_address.to_dict() if self.billing_address else None,
            "shipping_method": self.shipping_method,
            "payment_id": self.payment_id,
            "payment_method": self.payment_method,
            "notes": self.notes,
        }

    @staticmethod
    def from_dict(d: dict) -> OrderDraft:  # type: ignore[type-arg]
        return OrderDraft(
            checkout_session_id=d["checkout_session_id"],
            customer_id=d["customer_id"],
            email=d["email"],
            currency_code=d["currency_code"],
            lines=[OrderLine(**ln) for ln in d["lines"]],
            discounts=[(str(c), int(a)) for c, a in d["discounts"]],
            subtotal_minor=d["subtotal_minor"],
            discount_minor=d["discount_minor"],
            shipping_minor=d["shipping_minor"],
            tax_minor=d["tax_minor"],
            grand_total_minor=d["grand_total_minor"],
            shipping_address=Address(**d["shipping_address"]),
            billing_address=Address.from_dict(d["billing_address"]),
            shipping_method=d["shipping_method"],
            payment_id=d["payment_id"],
            payment_method=d["payment_method"],
            notes=d["notes"],
            authorized_minor=int(d.get("authorized_minor", d["grand_total_minor"])),
            delivery=window_from_list(d.get("delivery")),
        )


def _window_list(window: DeliveryWindow | None) -> list[int] | None:
    return None if window is None else [window.min_business_days, window.max_business_days]


def window_from_list(raw: object) -> DeliveryWindow | None:
    """A window as kept in JSON ([min, max]); None for none (or state written before windows existed)."""
    if not isinstance(raw, list) or len(raw) != 2:
        return None
    return DeliveryWindow(int(raw[0]), int(raw[1]))


@dataclass(frozen=True, slots=True)
class OrderRef:
    order_id: str
    status: OrderStatus
