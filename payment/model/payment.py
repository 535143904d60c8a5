"""The payment aggregate: statuses, the transitions allowed between them, and its events.

Transitions only move forward (a webhook that arrives late can never undo a
later state), and every state change is a conditional update from an explicit
set of source statuses, so two concurrent callers cannot both win.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kernel.errors import Reason
from kernel.money import Money

__all__ = [
    "CAPTURE_HOLDING",
    "COD",
    "COD_PROVIDER",
    "FINISHED_AUTHORIZATION",
    "INVALID_STATE",
    "NOTHING_HELD",
    "Attempt",
    "Consumed",
    "EventRecord",
    "NewPayment",
    "NothingToDo",
    "Payment",
    "PaymentStatus",
    "Refund",
    "Transition",
    "event_data",
]

COD = "cod"
COD_PROVIDER = "cod"
# Refusal reason for an operation the payment's current status does not allow.
INVALID_STATE = Reason.PAYMENT_INVALID_STATE


class PaymentStatus(enum.StrEnum):
    # Sent to the provider, answer unknown (timeout, 5xx): a retry with the same key is safe.
    PENDING = "PENDING"
    REQUIRES_ACTION = "REQUIRES_ACTION"
    AUTHORIZED = "AUTHORIZED"
    # A capture (or void) claimed the payment and is talking to the provider.
    CAPTURING = "CAPTURING"
    VOIDING = "VOIDING"
    CAPTURED = "CAPTURED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"
    VOIDED = "VOIDED"
    DECLINED = "DECLINED"
    FAILED = "FAILED"
    CASH_ON_DELIVERY = "CASH_ON_DELIVERY"


S = PaymentStatus

# Money for an order has been (or is being) taken: at most one such payment per order (invariant 2).
CAPTURE_HOLDING = frozenset({S.CAPTURING, S.CAPTURED, S.PARTIALLY_REFUNDED, S.REFUNDED})
# A payment that holds nothing: any open intent of it is a leak (payment.biz.reconcile).
NOTHING_HELD = frozenset({S.VOIDED, S.DECLINED, S.FAILED})
# What AuthorizePayment returns as is on a retry, without calling the provider again.
FINISHED_AUTHORIZATION = frozenset(set(S) - {S.PENDING})


@dataclass(frozen=True)
class NewPayment:
    payment_id: uuid.UUID
    idempotency_key: str
    order_ref: str
    customer_id: str
    amount: Money
    payment_method: str
    provider: str
    return_url: str

    @property
    def is_cod(self) -> bool:
        return self.payment_method == COD


@dataclass(frozen=True)
class Payment:
    payment_id: uuid.UUID
    idempotency_key: str
    order_ref: str
    order_id: str | None
    customer_id: str
    status: PaymentStatus
    amount: Money
    captured_minor: int
    refunded_minor: int
    provider: str
    provider_payment_id: str | None
    payment_method: str
    return_url: str
    next_action_url: str | None
    failure_code: str | None
    failure_message: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def captured(self) -> Money:
        return Money(self.amount.currency_code, self.captured_minor)

    @property
    def refunded(self) -> Money:
        return Money(self.amount.currency_code, self.refunded_minor)

    def same_request(self, new: NewPayment) -> bool:
        """A retry must repeat the first request; anything else is a reused key."""
        return (
            self.order_ref == new.order_ref and self.amount == new.amount and self.payment_method == new.payment_method
        )


@dataclass(frozen=True)
class Refund:
    refund_id: uuid.UUID
    payment_id: uuid.UUID
    idempotency_key: str
    amount_minor: int
    status: str
    provider_refund_id: str | None


@dataclass(frozen=True)
class Attempt:
    """One call to the provider, for the audit log (never the card data: there is none)."""

    operation: str
    request: dict[str, Any]
    response: dict[str, Any]
    outcome: str


@dataclass(frozen=True)
class Consumed:
    """An event a consumer applies: recorded in its inbox by the same commit as the state change it causes."""

    consumer: str
    event_id: str


@dataclass(frozen=True)
class Transition:
    """Move a payment to ``to`` only if its status is one of ``sources``; record ``event_type`` with it.

    With ``lease_seconds`` the new status is a claim (CAPTURING, VOIDING) held until the lease ends;
    a claim whose lease ran out (its holder crashed) may be taken again. With ``consumed`` the
    event that caused it is recorded as applied in the same transaction, if the transition applies.
    """

    to: PaymentStatus
    sources: frozenset[PaymentStatus]
    changes: dict[str, Any] = field(default_factory=dict)
    event_type: str | None = None
    event_extra: dict[str, Any] = field(default_factory=dict)
    attempt: Attempt | None = None
    lease_seconds: int | None = None
    consumed: Consumed | None = None


@dataclass(frozen=True)
class NothingToDo:
    """When a provider event leaves a payment as it is, so that recording it is all there is to do (HandleWebhook's
    short cut, evaluated by the one statement that records the event, on the row as that statement sees it).

    The event moves a payment only from ``sources``; a refund event (``refunded``: the amount the provider says is
    refunded) moves nothing once that much of the captured amount is refunded; and an open authorization
    (``open_intent``) also needs the payment to stand behind it — the event's provider, this intent or none yet,
    a status that holds money — or it is an orphan to cancel.
    """

    sources: frozenset[PaymentStatus]
    refunded: int | None = None
    open_intent: bool = False


@dataclass(frozen=True)
class EventRecord:
    """What recording a provider event with :class:`NothingToDo` found: the payment (None when there is none),
    whether the event was claimed before, whether it leaves the payment as it is, and whether it was recorded now
    (False when a concurrent delivery recorded it first)."""

    payment: Payment | None
    seen: bool
    nothing_to_do: bool
    recorded: bool


def event_data(p: Payment, **extra: Any) -> dict[str, Any]:
    """The payload every payment event carries, so consumers (order, checkout) need no lookup."""
    data: dict[str, Any] = {
        "payment_id": str(p.payment_id),
        "order_ref": p.order_ref,
        "order_id": p.order_id or "",
        "customer_id": p.customer_id,
        "status": p.status.value,
        "amount": {"currency_code": p.amount.currency_code, "amount_minor": p.amount.amount_minor},
        "captured_minor": p.captured_minor,
        "refunded_minor": p.refunded_minor,
        "provider": p.provider,
        "provider_payment_id": p.provider_payment_id or "",
    }
    data.update(extra)
    return data
