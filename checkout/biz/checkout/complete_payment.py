"""Completing an asynchronous payment (3-D Secure, redirects, QR wallets) after ConfirmCheckout answered.

The order waits in PENDING_PAYMENT, its session in AWAITING_PAYMENT, with stock and promotion usage
held over the payment window. What the provider says — through payment's events (its webhooks) or a
status poll when a webhook is late — completes it through the same :class:`Settlement` a synchronous
checkout uses: stock confirmed, then captured, then promotion usage confirmed, order CONFIRMED; or
fails it: authorization voided, stock and usage released, order PAYMENT_FAILED. So does the window
passing with no answer.

Protects DESIGN.md §4.2 (the AWAITING_PAYMENT → CONFIRMING claim is a conditional update, so a
webhook, its duplicate, a poll and a running ConfirmCheckout can't settle one session twice; an event
for a session whose saga is still running waits for it) and §4.3 (a success that arrives after the
session failed is voided, or refunded if it was captured: no money is kept without a live order).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from checkout.biz.checkout.compensations import Compensator
from checkout.biz.checkout.lease import Lease, LeaseLost, Leases
from checkout.biz.checkout.settle import Settlement
from checkout.biz.policy import CheckoutPolicy
from checkout.biz.ports import Gateways, UnitOfWork
from checkout.model.catalog import OrderStatus, PaymentStatus
from checkout.model.compensation import Operation
from checkout.model.session import SagaState, SagaStep, Session, SessionStatus
from kernel.errors import Reason

__all__ = ["NotYet", "PaymentCompletion"]

log = logging.getLogger("kassa.checkout.payments")

_SUCCEEDED = frozenset({PaymentStatus.AUTHORIZED, PaymentStatus.CAPTURED})
_FAILED = frozenset({PaymentStatus.FAILED, PaymentStatus.DECLINED, PaymentStatus.VOIDED})
_ENDED = frozenset({SessionStatus.CANCELLED, SessionStatus.EXPIRED})


class NotYet(Exception):
    """The session's ConfirmCheckout is still running: hear about this payment again later."""


class PaymentCompletion:
    def __init__(
        self,
        uow: UnitOfWork,
        gateways: Gateways,
        settlement: Settlement,
        compensator: Compensator,
        policy: CheckoutPolicy,
    ) -> None:
        self._uow = uow
        self._g = gateways
        self._settlement = settlement
        self._compensator = compensator
        self._policy = policy
        self._leases = Leases(uow, policy)

    async def on_payment(self, session_id: str, payment_id: str, status: PaymentStatus) -> str:
        """Apply what the payment service says of a session's payment; a word for the log."""
        async with self._uow.read() as tx:
            session = await tx.sessions.get(session_id)
        if session is None:
            return "no such session"
        if session.status is SessionStatus.CONFIRMING:
            raise NotYet(f"session {session_id} is still being confirmed")
        if session.status is SessionStatus.AWAITING_PAYMENT:
            if payment_id and session.saga_state.payment_id and payment_id != session.saga_state.payment_id:
                return "another payment"
            if status in _SUCCEEDED:
                return await self._complete(session)
            if status in _FAILED:
                cause = f"the payment failed at the provider ({status.value.lower()})"
                return await self._fail(session, cause, Reason.PAYMENT_DECLINED)
            return "still waiting"
        if session.status in _ENDED and payment_id and status in _SUCCEEDED:
            return await self._give_back(session, payment_id, status)
        return "nothing to do"

    async def poll_once(self, limit: int = 20) -> int:
        """Sessions no webhook told about for a while, or past their window: ask the provider. The worker's pass."""
        async with self._uow.transaction() as tx:
            due = await tx.sessions.awaiting_due(self._policy.payment_poll_after_seconds, limit)
        done = 0
        for session in due:
            try:
                if await self._poll(session):
                    done += 1
            except Exception:
                log.exception("polling the payment of session %s failed; will retry", session.session_id)
        return done

    async def _poll(self, session: Session) -> bool:
        state = session.saga_state
        if state.payment_id:
            payment = await self._g.payment.get(state.payment_id, refresh=True)
            if payment.status in _SUCCEEDED:
                await self._complete(session)
                return True
            if payment.status in _FAILED:
                cause = f"the payment failed at the provider ({payment.status.value.lower()})"
                await self._fail(session, cause, Reason.PAYMENT_DECLINED)
                return True
        if session.expires_at <= datetime.now(UTC):
            await self._fail(session, "the payment window passed with no payment", Reason.SESSION_EXPIRED)
            return True
        return False

    async def _complete(self, session: Session) -> str:
        state = session.saga_state
        state.payment_status = PaymentStatus.AUTHORIZED
        # An order cancelled while its customer was authenticating must not be charged. Asked before the
        # claim, so an outage here leaves the session awaiting payment, not stuck mid-settlement.
        order = await self._g.order.get_order(state.order_id)
        cancelled = order.status is OrderStatus.CANCELLED
        step = SagaStep.COMPENSATING if cancelled else SagaStep.SETTLE_PAYMENT
        if (claimed := await self._claim(session, step, state)) is None:
            return "settled elsewhere"
        session, lease = claimed
        try:
            if cancelled:
                cause = "the order was cancelled before its payment completed"
                await self._settlement.fail(session, state, lease, cause, reason=Reason.CANCELLED)
                return "order cancelled: payment voided"
            result = await self._settlement.settle(session, state, lease)
        except LeaseLost:
            return "settled elsewhere"
        return f"order {result.order_status}"

    async def _fail(self, session: Session, cause: str, reason: str) -> str:
        if (claimed := await self._claim(session, SagaStep.COMPENSATING, session.saga_state)) is None:
            return "settled elsewhere"
        session, lease = claimed
        try:
            await self._settlement.fail(session, session.saga_state, lease, cause, reason=reason)
        except LeaseLost:
            return "settled elsewhere"
        return "payment failed: order failed, stock and coupons released"

    async def _claim(self, session: Session, step: SagaStep, state: SagaState) -> tuple[Session, Lease] | None:
        """AWAITING_PAYMENT → CONFIRMING under a new saga attempt, held by this caller; None when another got it."""
        since = self._leases.now()
        async with self._uow.transaction() as tx:
            claimed = await tx.sessions.claim_awaiting(session.session_id, step, state)
        return None if claimed is None else (claimed, self._leases.hold(claimed, since))

    async def _give_back(self, session: Session, payment_id: str, status: PaymentStatus) -> str:
        """A success for a checkout that already failed: let the money go at once."""
        sid = session.session_id
        if status is PaymentStatus.CAPTURED:
            payload = {"payment_id": payment_id, "idempotency_key": f"late-{payment_id}", "reason": "order failed"}
            await self._compensator.attempt_or_record(sid, Operation.REFUND_PAYMENT, payload)
            return "late capture refunded"
        payload = {"payment_id": payment_id, "reason": "the checkout had already failed"}
        await self._compensator.attempt_or_record(sid, Operation.VOID_AUTHORIZATION, payload)
        return "late authorization voided"
