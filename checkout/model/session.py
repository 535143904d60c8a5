"""A checkout session, its totals preview and the persisted progress of the ConfirmCheckout saga."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from checkout.model.catalog import Address
from infra.money import Money

__all__ = [
    "ConfirmResult",
    "Discount",
    "Preview",
    "SagaState",
    "SagaStep",
    "Session",
    "SessionLine",
    "SessionStatus",
]


class SessionStatus(StrEnum):
    OPEN = "OPEN"
    CONFIRMING = "CONFIRMING"
    COMPLETED = "COMPLETED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"


class SagaStep(StrEnum):
    """The step a ConfirmCheckout saga is about to run (persisted before the call it names).

    A recovery reads it: from CREATE_ORDER on, the order may exist, so the saga is resumed
    forward (CreateOrder is idempotent on the session); before it, the saga is compensated.
    Only the steps whose recovery differs from the one before are written (each write is a
    transaction): EXTEND_RESERVATIONS and SETTLE_PAYMENT are no longer persisted by the saga and
    stay for sessions stored by earlier versions.
    """

    VALIDATED = "validated"
    RESERVE_PROMOTION = "reserve_promotion"
    EXTEND_RESERVATIONS = "extend_reservations"
    AUTHORIZE_PAYMENT = "authorize_payment"
    CREATE_ORDER = "create_order"
    SETTLE_PAYMENT = "settle_payment"
    FINALIZE = "finalize"
    COMPENSATING = "compensating"
    DONE = "done"

    @property
    def order_may_exist(self) -> bool:
        return self in (SagaStep.CREATE_ORDER, SagaStep.SETTLE_PAYMENT, SagaStep.FINALIZE, SagaStep.DONE)


@dataclass(frozen=True, slots=True)
class SessionLine:
    """One reserved line: a sku's units held in one warehouse, with the catalog facts totals need."""

    sku: str
    name: str
    quantity: int
    unit_price_minor: int
    warehouse_id: str
    origin: Address
    weight_grams: int = 0
    tax_class: str = "standard"
    category: str = ""
    brand: str = ""

    @property
    def line_total_minor(self) -> int:
        return self.unit_price_minor * self.quantity

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> SessionLine:
        return SessionLine(**{**d, "origin": Address(**d["origin"])})


@dataclass(frozen=True, slots=True)
class Discount:
    code: str
    amount_minor: int


@dataclass(frozen=True, slots=True)
class Preview:
    """Totals computed now; nothing committed. grand = subtotal - discount + shipping + tax."""

    currency_code: str
    lines: list[SessionLine]
    subtotal_minor: int
    discount_minor: int
    shipping_minor: int
    tax_minor: int
    discounts: list[Discount] = field(default_factory=list)
    rejected: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def grand_total_minor(self) -> int:
        return self.subtotal_minor - self.discount_minor + self.shipping_minor + self.tax_minor

    @property
    def grand_total(self) -> Money:
        return Money(self.currency_code, self.grand_total_minor)

    @property
    def applied_codes(self) -> list[str]:
        return [d.code for d in self.discounts]

    def to_dict(self) -> dict[str, Any]:
        return {
            "currency_code": self.currency_code,
            "lines": [ln.to_dict() for ln in self.lines],
            "subtotal_minor": self.subtotal_minor,
            "discount_minor": self.discount_minor,
            "shipping_minor": self.shipping_minor,
            "tax_minor": self.tax_minor,
            "discounts": [[d.code, d.amount_minor] for d in self.discounts],
            "rejected": [list(r) for r in self.rejected],
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Preview:
        return Preview(
            currency_code=d["currency_code"],
            lines=[SessionLine.from_dict(ln) for ln in d["lines"]],
            subtotal_minor=d["subtotal_minor"],
            discount_minor=d["discount_minor"],
            shipping_minor=d["shipping_minor"],
            tax_minor=d["tax_minor"],
            discounts=[Discount(c, a) for c, a in d["discounts"]],
            rejected=[(r[0], r[1], r[2]) for r in d["rejected"]],
        )


@dataclass(frozen=True, slots=True)
class ConfirmResult:
    """What ConfirmCheckout answers; stored on the session and in the result cache."""

    session_id: str
    order_id: str
    order_status: str
    payment_status: str
    next_action_url: str
    currency_code: str
    grand_total_minor: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> ConfirmResult:
        return ConfirmResult(**d)


@dataclass(slots=True)
class SagaState:
    """What the saga has done so far, persisted on the session after every step."""

    promo_codes: list[str] = field(default_factory=list)
    promo_reserved: bool = False
    reservations_extended: bool = False
    authorize: dict[str, Any] | None = None
    payment_id: str = ""
    payment_status: str = ""
    next_action_url: str = ""
    order_draft: dict[str, Any] | None = None
    order_id: str = ""
    order_status: str = ""
    preview: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any] | None) -> SagaState:
        return SagaState(**(d or {}))


@dataclass(slots=True)
class Session:
    session_id: str
    cart_id: str
    customer_id: str
    currency_code: str
    lines: list[SessionLine]
    expires_at: datetime
    status: SessionStatus = SessionStatus.OPEN
    email: str = ""
    shipping_address: Address | None = None
    billing_address: Address | None = None
    shipping_method: str = ""
    payment_method: str = ""
    promotion_codes: list[str] = field(default_factory=list)
    notes: str = ""
    preview: Preview | None = None
    idempotency_key: str | None = None
    saga_step: SagaStep | None = None
    saga_state: SagaState = field(default_factory=SagaState)
    result: ConfirmResult | None = None
    confirm_started_at: datetime | None = None
    order_id: str = ""
    last_error: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at <= now

    @property
    def subtotal_minor(self) -> int:
        return sum(ln.line_total_minor for ln in self.lines)
