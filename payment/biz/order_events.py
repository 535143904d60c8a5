"""Order events payment reacts to: a cancelled order gets its money back, a failed one its hold released."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kernel.errors import FailedPrecondition, Reason
from payment.biz.ports import UnitOfWork
from payment.biz.providers import Providers
from payment.biz.refund import RefundPayment
from payment.biz.void import VoidAuthorization
from payment.model.payment import Consumed, Payment, PaymentStatus

__all__ = [
    "CONSUMER",
    "ORDER_CANCELLED",
    "ORDER_EVENT_TYPES",
    "ORDER_PAYMENT_FAILED",
    "ReleaseEndedOrder",
    "RetryLater",
    "payments_of",
    "settle_once",
]

CONSUMER = "payment-order-events"
ORDER_CANCELLED = "OrderCancelled"
ORDER_PAYMENT_FAILED = "OrderPaymentFailed"
ORDER_EVENT_TYPES = (ORDER_CANCELLED, ORDER_PAYMENT_FAILED)

log = logging.getLogger("kassa.payment.order_events")

S = PaymentStatus
_OPEN_HOLD = frozenset({S.PENDING, S.REQUIRES_ACTION, S.AUTHORIZED, S.VOIDING, S.CASH_ON_DELIVERY})
_CAPTURED = frozenset({S.CAPTURED, S.PARTIALLY_REFUNDED})


class RetryLater(Exception):
    """The payment is mid-operation (a capture talking to the provider): apply the event once it settles."""


class ReleaseEndedOrder:
    """Release what an ended order still holds. Protects invariant 3 (no money leak) and 5 (applied once).

    OrderCancelled voids an open authorization (or a cash-on-delivery promise) and refunds
    whatever is captured and not yet refunded, with the key ``cancel-<order_id>``;
    OrderPaymentFailed only voids open holds and never refunds. Every effect is idempotent
    by its own key (a void of a voided payment is a no-op, the refund key replays), and the
    event is recorded in the inbox by the same commit as the last payment's end state (VOIDED,
    the refund's outcome), or on its own when nothing needed doing: a redelivery afterwards does
    nothing, and a crash before that commit repeats only idempotent effects.
    """

    def __init__(self, uow: UnitOfWork, providers: Providers) -> None:
        self._uow = uow
        self._void = VoidAuthorization(uow, providers)
        self._refund = RefundPayment(uow, providers)

    async def __call__(self, event_id: str, event_type: str, data: Mapping[str, Any]) -> str:
        order_id = str(data.get("order_id") or "")

        async def settle(payment: Payment, consumed: Consumed, last: bool) -> str:
            # Only the last effect records the event: a crash after an earlier one must leave it to redo.
            return await self._settle(payment, event_type, order_id, consumed=consumed if last else None)

        return await settle_once(self._uow, Consumed(CONSUMER, event_id), data, settle)

    async def _settle(self, payment: Payment, event_type: str, order_id: str, *, consumed: Consumed | None) -> str:
        reason = "order cancelled" if event_type == ORDER_CANCELLED else "order payment failed"
        if payment.status == S.CAPTURING:
            raise RetryLater(f"payment {payment.payment_id} is being captured")
        if payment.status in _OPEN_HOLD:
            done = await self._void(payment.payment_id, reason, consumed=consumed)
            return f"{payment.payment_id} {done.status.value}"
        if payment.status in _CAPTURED and event_type == ORDER_CANCELLED:
            key = f"cancel-{order_id or payment.order_id or payment.payment_id}"
            try:
                done, _ = await self._refund(payment, key, None, consumed=consumed)
            except FailedPrecondition as refused:
                if refused.reason == Reason.REFUND_EXCEEDS_CAPTURE:
                    # Other refunds (one still pending, say) already give back everything captured.
                    return f"{payment.payment_id} nothing left to refund"
                # The provider refused it (recorded on the refund and in the attempt log): an operator's
                # case, not one a redelivery can change.
                log.error("refund of cancelled order %s refused: %s", order_id, refused.message)
                return f"{payment.payment_id} refund refused"
            return f"{payment.payment_id} {done.status.value}"
        return f"{payment.payment_id} unchanged ({payment.status.value})"


async def settle_once(
    uow: UnitOfWork,
    consumed: Consumed,
    data: Mapping[str, Any],
    settle: Callable[[Payment, Consumed, bool], Awaitable[str]],
) -> str:
    """An order event's effect on each of the order's payments, once: an event the inbox has already claimed is a
    "duplicate"; else ``settle(payment, consumed, is_last)`` runs for each payment in turn (an effect may commit
    the claim with its end state), and the claim then commits on its own (a no-op if an effect did), so an event
    that needed nothing is not applied again either."""
    async with uow.read() as tx:
        seen = await tx.inbox.seen(consumed.consumer, consumed.event_id)
    if seen:
        return "duplicate"
    payments = await payments_of(uow, data)
    outcomes = [await settle(p, consumed, p is payments[-1]) for p in payments]
    async with uow.single() as tx:
        await tx.inbox.claim(consumed.consumer, consumed.event_id)
    return ", ".join(outcomes) or "no payment"


async def payments_of(uow: UnitOfWork, data: Mapping[str, Any]) -> list[Payment]:
    """The order's payment by id, else every payment of its checkout session."""
    try:
        payment_id = uuid.UUID(str(data.get("payment_id") or ""))
    except ValueError:
        payment_id = None
    if payment_id is not None:
        async with uow.read() as tx:
            payment = await tx.payments.get(payment_id)
        if payment is not None:
            return [payment]
    session_id = str(data.get("checkout_session_id") or "")
    if not session_id:
        return []
    async with uow.read() as tx:
        return await tx.payments.by_order_ref(session_id)
