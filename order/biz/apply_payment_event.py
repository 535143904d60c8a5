"""ApplyPaymentEvent: what the payment service tells about an order's payment, applied once.

Consumes PaymentAuthorized, PaymentCaptured, PaymentFailed, PaymentVoided and PaymentRefunded
(``kassa.payment.<Type>``, payload ``payment/model/payment.py:event_data``). Each records the
order's payment status, if it moves it forward, with a timeline entry; PaymentCaptured and
PaymentFailed also settle an order still waiting in PENDING_PAYMENT, as RecordPayment does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kernel.money import Money
from order.biz.ports import InboxClaim, Transition, UnitOfWork
from order.biz.transitions import apply_transition
from order.model.events import EVENT_FOR_STATUS
from order.model.order import OrderStatus, PaymentOutcome, PaymentStatus
from order.model.status import payment_target

__all__ = ["CONSUMER", "EVENT_TYPES", "ApplyPaymentEvent", "EventDisposition", "PaymentEvent", "PaymentEventType"]

log = logging.getLogger("kassa.order.payments")

CONSUMER = "order-payments"


class PaymentEventType(StrEnum):
    AUTHORIZED = "PaymentAuthorized"
    CAPTURED = "PaymentCaptured"
    FAILED = "PaymentFailed"
    VOIDED = "PaymentVoided"
    REFUNDED = "PaymentRefunded"


EVENT_TYPES = tuple(t.value for t in PaymentEventType)

T, P = PaymentEventType, PaymentStatus
# The payment statuses each event may report; the first is assumed when it reports none of them.
_REPORTS: dict[PaymentEventType, tuple[PaymentStatus, ...]] = {
    T.AUTHORIZED: (P.AUTHORIZED,),
    T.CAPTURED: (P.CAPTURED,),
    T.FAILED: (P.FAILED, P.DECLINED),
    T.VOIDED: (P.VOIDED,),
    T.REFUNDED: (P.REFUNDED, P.PARTIALLY_REFUNDED),
}
# Events that settle an order waiting for its payment (RecordPayment's outcomes).
_OUTCOMES = {T.CAPTURED: PaymentOutcome.CAPTURED, T.FAILED: PaymentOutcome.FAILED}
_MAX_DETAIL = 200


def _money(raw: Any) -> Money | None:
    if not isinstance(raw, dict):
        return None
    currency, amount = raw.get("currency_code"), raw.get("amount_minor")
    if not isinstance(currency, str) or not currency or not isinstance(amount, int) or isinstance(amount, bool):
        return None
    return Money(currency, amount)


def _int(raw: Any) -> int | None:
    return raw if isinstance(raw, int) and not isinstance(raw, bool) else None


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    """One payment event, as this consumer reads it.

    ``status`` is the payment's status after the change; ``amount`` what the event moved (authorized,
    captured or refunded; None when it does not say); ``detail`` a failure code or void reason.
    """

    event_id: str
    event_type: PaymentEventType
    payment_id: str
    order_id: str
    order_ref: str
    status: PaymentStatus
    amount: Money | None = None
    detail: str = ""

    @staticmethod
    def from_data(event_id: str, event_type: str, data: dict[str, Any]) -> PaymentEvent | None:
        """None for an event this consumer cannot use (unknown type, no payment id)."""
        try:
            kind = PaymentEventType(event_type)
        except ValueError:
            return None
        payment_id = data.get("payment_id")
        if not isinstance(payment_id, str) or not payment_id:
            return None
        reports = _REPORTS[kind]
        try:
            status = PaymentStatus(str(data.get("status") or ""))
        except ValueError:
            status = reports[0]
        if status not in reports:
            status = reports[0]
        authorized = _money(data.get("amount"))
        amount: Money | None = None
        if kind == T.AUTHORIZED:
            amount = authorized
        elif kind == T.CAPTURED:
            captured = _int(data.get("captured_minor"))
            amount = _money(data.get("captured_amount")) or (
                Money(authorized.currency_code, captured) if authorized and captured is not None else None
            )
        elif kind == T.REFUNDED:
            amount = _money(data.get("refund_amount"))
        detail = data.get("failure_code") or data.get("reason") or ""
        return PaymentEvent(
            event_id=event_id,
            event_type=kind,
            payment_id=payment_id,
            order_id=str(data.get("order_id") or ""),
            order_ref=str(data.get("order_ref") or ""),
            status=status,
            amount=amount,
            detail=str(detail)[:_MAX_DETAIL],
        )

    @property
    def cause(self) -> str:
        """The timeline entry: "payment captured 30.00 USD", "payment refunded 5.00 USD (partial)"."""
        verb = {
            T.AUTHORIZED: "authorized",
            T.CAPTURED: "captured",
            T.FAILED: "declined" if self.status == P.DECLINED else "failed",
            T.VOIDED: "voided",
            T.REFUNDED: "refunded",
        }[self.event_type]
        text = f"payment {verb}"
        if self.amount is not None:
            text += f" {self.amount}"
        if self.status == P.PARTIALLY_REFUNDED:
            text += " (partial)"
        if self.detail:
            text += f": {self.detail}"
        return text


class EventDisposition(StrEnum):
    """What the consumer did with an event; every disposition is acked."""

    APPLIED = "applied"  # the order's status moved (and its payment status was recorded)
    RECORDED = "recorded"  # the payment status and a timeline entry, the order's status unchanged
    STALE = "stale"  # a late event: the order's payment is already further along
    DUPLICATE = "duplicate"
    NO_ORDER = "no_order"
    CONFLICT = "conflict"  # an event for another payment than the order's


class ApplyPaymentEvent:
    """Protects invariant 5 (no event applied twice): the payment status, the timeline entry, any
    status change with its outbox event, and the inbox claim commit in one statement's transaction,
    so a redelivered (or republished) event has no second effect. Invariant 2 as RecordPayment: only
    a PENDING_PAYMENT order is confirmed or failed, and only by its own payment. Invariant 3: a capture
    reported for an order cancelled meanwhile never un-cancels it; the order shows CAPTURED, and payment
    refunds it on OrderCancelled. A late event never moves the payment status backwards.

    An event for an order that does not exist yet is acked (NO_ORDER): checkout records the outcome
    itself when it places the order.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, event: PaymentEvent) -> EventDisposition:
        order_id = event.order_id
        if not order_id and not event.order_ref:
            return EventDisposition.NO_ORDER
        outcome = _OUTCOMES.get(event.event_type)
        target = payment_target(outcome) if outcome is not None else None
        async with self._uow.statement() as tx:
            result = await apply_transition(
                tx,
                Transition(
                    order_id=order_id,
                    # An event from before the order existed (PaymentAuthorized) names its session: the statement
                    # finds the order by it (no lookup of its id first).
                    checkout_session_id=event.order_ref if not order_id else "",
                    cause=event.cause,
                    sources=frozenset({OrderStatus.PENDING_PAYMENT}) if target else frozenset(),
                    target=target,
                    event_type=EVENT_FOR_STATUS[target] if target else "",
                    payment_id=event.payment_id,
                    payment_outcome=outcome,
                    payment_status=event.status,
                    inbox=InboxClaim(consumer=CONSUMER, event_id=event.event_id),
                    # Applied or recorded, the event needs nothing of the order back (its lines, discounts and
                    # personal data are neither read nor decrypted).
                    brief=True,
                ),
            )
        if result.applied:
            return EventDisposition.APPLIED
        if result.recorded:
            return EventDisposition.RECORDED
        order = result.order
        if order is None:
            return EventDisposition.NO_ORDER
        if result.duplicate:
            return EventDisposition.DUPLICATE
        if order.payment_id and order.payment_id != event.payment_id:
            log.error(
                "payment event %s is for payment %s, but order %s has payment %s",
                event.event_id,
                event.payment_id,
                order.order_id,
                order.payment_id,
            )
            return EventDisposition.CONFLICT
        return EventDisposition.STALE
