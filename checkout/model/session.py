"""A checkout session, its totals preview and the persisted progress of the ConfirmCheckout saga."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from checkout.model.catalog import (
    Address,
    AuthorizeRequest,
    DeliveryWindow,
    OrderDraft,
    OrderStatus,
    PaymentStatus,
    window_from_list,
)
from kernel.money import Money

__all__ = [
    "ConfirmError",
    "ConfirmRecord",
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
    # The order is placed and waits for the customer's payment action until expires_at (the payment window).
    AWAITING_PAYMENT = "AWAITING_PAYMENT"


class SagaStep(StrEnum):
    """The step a ConfirmCheckout saga is about to run (persisted before the call it names).

    A recovery reads it: from CREATE_ORDER on, the order may exist, so the saga is resumed
    forward (CreateOrder is idempotent on the session); before it, the saga is compensated.
    Only the steps whose recovery differs from the one before are written (each write is a
    transaction). SETTLE_PAYMENT is written when an asynchronous payment's completion claims the
    session (the payment is known to be authorized) or when settling stopped on an outage;
    COMPENSATING when a failure is being undone. EXTEND_RESERVATIONS stays for sessions stored by
    earlier versions.
    """

    VALIDATED = "validated"
    RESERVE_PROMOTION = "reserve_promotion"
    EXTEND_RESERVATIONS = "extend_reservations"
    AUTHORIZE_PAYMENT = "authorize_payment"
    CREATE_ORDER = "create_order"
    SETTLE_PAYMENT = "settle_payment"
    FINALIZE = "finalize"
    AWAIT_PAYMENT = "await_payment"
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
        # Spelled out, as Address.to_dict: dataclasses.asdict is several times slower.
        return {"sku": self.sku, "name": self.name, "quantity": self.quantity,
                "unit_price_minor": self.unit_price_minor, "warehouse_id": self.warehouse_id,
                "origin": self.origin.to_dict(), "weight_grams": self.weight_grams, "tax_class": self.tax_class,
                "category": self.category, "brand": self.brand}  # fmt: skip

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
    # When it would arrive with the session's shipping method (None until there is one to quote).
    delivery: DeliveryWindow | None = None

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
            "delivery": None
            if self.delivery is None
            else [self.delivery.min_business_days, self.delivery.max_business_days],
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
            delivery=window_from_list(d.get("delivery")),
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
        return {"session_id": self.session_id, "order_id": self.order_id, "order_status": self.order_status,
                "payment_status": self.payment_status, "next_action_url": self.next_action_url,
                "currency_code": self.currency_code, "grand_total_minor": self.grand_total_minor}  # fmt: skip

    @staticmethod
    def from_dict(d: dict[str, Any]) -> ConfirmResult:
        return ConfirmResult(**d)


@dataclass(slots=True)
class SagaState:
    """What the saga has done so far, persisted on the session at every step that recovery reads."""

    promo_codes: list[str] = field(default_factory=list)
    promo_reserved: bool = False
    reservations_extended: bool = False
    # The AuthorizePayment request, kept before the call so an unanswered one can be voided by its key.
    authorize: AuthorizeRequest | None = None
    payment_id: str = ""
    payment_status: PaymentStatus | None = None
    next_action_url: str = ""
    # What the payment service says it authorized; the order service checks it against its own total.
    authorized_minor: int = 0
    # The CreateOrder request, kept before the call so a recovery resends exactly it.
    order_draft: OrderDraft | None = None
    order_id: str = ""
    order_status: OrderStatus | None = None
    preview: Preview | None = None
    # The answer the request that drove this saga gets when the saga failed and undid everything, set before
    # the undo starts: whoever finishes the undo (this saga or the recovery worker) keeps it for the request.
    failure: ConfirmError | None = None

    @property
    def free(self) -> bool:
        """Nothing to pay (a 100% coupon with free shipping): no authorization at all."""
        return self.authorize is None and self.order_draft is not None and self.order_draft.grand_total_minor == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "promo_codes": list(self.promo_codes),
            "promo_reserved": self.promo_reserved,
            "reservations_extended": self.reservations_extended,
            "authorize": self.authorize.to_dict() if self.authorize else None,
            "payment_id": self.payment_id,
            "payment_status": self.payment_status.value if self.payment_status else "",
            "next_action_url": self.next_action_url,
            "authorized_minor": self.authorized_minor,
            "order_draft": self.order_draft.to_dict() if self.order_draft else None,
            "order_id": self.order_id,
            "order_status": self.order_status.value if self.order_status else "",
            "preview": self.preview.to_dict() if self.preview else None,
            "failure": self.failure.to_dict() if self.failure else None,
        }

    @staticmethod
    def from_dict(d: dict[str, Any] | None) -> SagaState:
        d = d or {}
        return SagaState(
            promo_codes=list(d.get("promo_codes") or []),
            promo_reserved=bool(d.get("promo_reserved")),
            reservations_extended=bool(d.get("reservations_extended")),
            authorize=AuthorizeRequest.from_dict(d["authorize"]) if d.get("authorize") else None,
            payment_id=str(d.get("payment_id") or ""),
            payment_status=PaymentStatus(d["payment_status"]) if d.get("payment_status") else None,
            next_action_url=str(d.get("next_action_url") or ""),
            authorized_minor=int(d.get("authorized_minor") or 0),
            order_draft=OrderDraft.from_dict(d["order_draft"]) if d.get("order_draft") else None,
            order_id=str(d.get("order_id") or ""),
            order_status=OrderStatus(d["order_status"]) if d.get("order_status") else None,
            preview=Preview.from_dict(d["preview"]) if d.get("preview") else None,
            failure=ConfirmError.from_dict(d["failure"]) if d.get("failure") else None,
        )


@dataclass(frozen=True, slots=True)
class ConfirmError:
    """A final refusal of ConfirmCheckout, kept so a repeat of the request replays it (24 h)."""

    kind: str  # the kernel.errors class name: FailedPrecondition, Aborted, …
    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "reason": self.reason, "message": self.message, "metadata": dict(self.metadata)}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> ConfirmError:
        return ConfirmError(str(d["kind"]), str(d["reason"]), str(d["message"]), dict(d.get("metadata") or {}))


@dataclass(frozen=True, slots=True)
class ConfirmRecord:
    """What one idempotency key of a customer did: its request's fingerprint and its answer."""

    session_id: str
    fingerprint: str
    result: ConfirmResult | None = None
    error: ConfirmError | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "fingerprint": self.fingerprint,
            "result": self.result.to_dict() if self.result else None,
            "error": self.error.to_dict() if self.error else None,
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> ConfirmRecord:
        return ConfirmRecord(
            session_id=str(d["session_id"]),
            fingerprint=str(d.get("fingerprint") or ""),
            result=ConfirmResult.from_dict(d["result"]) if d.get("result") else None,
            error=ConfirmError.from_dict(d["error"]) if d.get("error") else None,
        )


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
    # The fingerprint of the ConfirmCheckout request (its key is ``idempotency_key``) whose answer the saga still
    # owes: set by the durable guard, cleared by the saga's last write, which keeps the answer in the same
    # transaction. None once answered, so a later end of the saga (an asynchronous payment's) keeps nothing.
    confirm_fingerprint: str | None = None
    saga_step: SagaStep | None = None
    saga_state: SagaState = field(default_factory=SagaState)
    result: ConfirmResult | None = None
    confirm_started_at: datetime | None = None
    # The fence of the saga's lease: bumped by every claim of the saga, and every saga write is conditional on it.
    saga_attempt: int = 0
    order_id: str = ""
    last_error: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at <= now

    @property
    def subtotal_minor(self) -> int:
        return sum(ln.line_total_minor for ln in self.lines)
