"""Completing an asynchronous payment (3-D Secure, redirects, QR wallets) after ConfirmCheckout answered.

The order waits in PENDING_PAYMENT, its session in AWAITING_PAYMENT, with stock and promotion usage
held over the payment window. What the provider says — through payment's events (its webhooks) or a
status poll when a webhook is late — completes it through the same :class:`Settlement` a synchronous
checkout uses: stock confirmed, then captured, then promotion usage confirmed, order CONFIRMED; or
fails it: authorization voided, stock and usage released, order PAYMENT_FAILED. So does the window
passing with no answer.

Protects DESIGN.md §4.2 (the AWAITING_PAYMENT → CONFIRMING claim is a conditional update, so a
webhook, its duplicate, a poll and a running ConfirmCheckout can't settle one session twice; an event
for a session whose saga is still running waits for it, unless the saga already holds that outcome
itself: :func:`saga_holds`) and §4.3 (a success that arrives after the
session failed is voided, or refunded if it was captured: no money is kept without a live order).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from checkout.biz.checkout.compensations import Compensator
from checkout.biz.checkout.lease import Lease, LeaseLost, Leases
from checkout.biz.checkout.settle import Settlement
from checkout.biz.policy import CheckoutPolicy
from checkout.biz.ports import Gateways, SessionPayment, UnitOfWork
from checkout.model.catalog import OrderStatus, PaymentStatus
from checkout.model.compensation import Operation
from checkout.model.session import SagaState, SagaStep, Session, SessionStatus
from kernel.errors import Reason

__all__ = ["NotYet", "PaymentCompletion", "saga_holds"]

log = logging.getLogger("kassa.checkout.payments")

_SUCCEEDED = frozenset({PaymentStatus.AUTHORIZED, PaymentStatus.CAPTURED})
_FAILED = frozenset({PaymentStatus.FAILED, PaymentStatus.DECLINED, PaymentStatus.VOIDED})
_ENDED = frozenset({SessionStatus.CANCELLED, SessionStatus.EXPIRED})


class NotYet(Exception):
    """The session's ConfirmCheckout is still running: hear about this payment again later."""


def saga_holds(seen: SessionPayment, payment_id: str, status: PaymentStatus, *, order_id: str = "") -> bool:
    """Whether the running saga of a CONFIRMING session already holds what this payment event says, so that hearing
    it again once the saga ended could change nothing: its persisted state names this payment, with the
    synchronous AUTHORIZED answer (not REQUIRES_ACTION: 3-D Secure waits for this very event; nor PENDING or a
    decline), and it is not undoing a failure (COMPENSATING).

    Why each event that passes is safe to drop (DESIGN.md §4.2, §4.3):

    * The session can't end AWAITING_PAYMENT: the saga waits for a payment only when the answer it holds is
      REQUIRES_ACTION (:meth:`Settlement.settle`; a recovery resumes from this persisted state). So a failure, a
      void or anything not a success is "nothing to do" after any end.
    * AUTHORIZED (the event of the authorization the saga itself made, or a webhook telling of it): after
      COMPLETED it is nothing to do. After CANCELLED it would void the payment, and every failure path voids it
      already: :meth:`Settlement.fail`, run by the saga, by the recovery of a saga that died (from this very
      state) and by a completion whose order was cancelled, voids a payment held AUTHORIZED by its id, or writes
      the void to the DLQ with the session's end, in the same statement.
    * CAPTURED only with ``order_id``. Payment captures for an order only when asked to: by step 8, after the
      stock was confirmed, or on shipment, of an order step 8 already confirmed. From there the saga ends
      COMPLETED: its one way back, an order that answers the capture with PAYMENT_FAILED, needs the order to
      have heard first that this payment was voided or failed, which a payment captured just now can't have
      been (both are final), or refunded, which gave the money back already. A capture naming no order
      happened at the provider behind the saga's back, before the saga captured: the saga might still fail,
      and its void can't give a captured payment back; the refund of the redelivery after the end can. So
      that one waits, as does any event while an undo is under way (its void may find the payment captured).
    """
    if not payment_id or seen.payment_id != payment_id or seen.saga_step is SagaStep.COMPENSATING:
        return False
    if seen.payment_status is not PaymentStatus.AUTHORIZED:
        return False
    return status is not PaymentStatus.CAPTURED or bool(order_id)


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

    async def on_payment(self, session_id: str, payment_id: str, status: PaymentStatus, *, order_id: str = "") -> str:
        """Apply what the payment service says of a session's payment (``order_id``: the order the event's payment
        was captured for, if any); a word for the log. Raises NotYet to hear of it again after the saga ended.

        Decided on a narrow read (:meth:`SessionRepo.get_payment`); the whole session is read only to complete or
        fail an awaited payment. For each status the session may be in when the event comes:

        * CONFIRMING, and the saga holds this payment (:func:`saga_holds`): acknowledged, nothing done. Heard
          again after the saga ended, it would find the session COMPLETED (nothing to do) or CANCELLED (a success
          given back, which the saga's own failure path already does for what passes), never AWAITING_PAYMENT;
          :func:`saga_holds` says why, case by case.
        * CONFIRMING otherwise (no payment persisted yet, another payment, one that needs the customer's action,
          an undo under way, a capture the saga did not ask for): NotYet, as before, so the event is applied to
          how the saga ends (DESIGN.md §4.3: a late success for an ended session is given back).
        * AWAITING_PAYMENT (3-D Secure, the saga ended waiting for exactly this event): a success completes the
          checkout, a failure fails it, both through the conditional claim (§4.2: one settlement however many
          deliveries, polls and webhooks race); another payment's event is ignored.
        * CANCELLED or EXPIRED: a success of any payment of the session is given back at once (§4.3).
        * COMPLETED, OPEN: nothing to do.

        A session this process ended itself lately (:meth:`Settlement.ended_here`) is not read: COMPLETED and
        CANCELLED are final, so what it remembers is what the read would find (a card checkout's two events
        usually come after its saga ended).
        """
        if (ended := self._settlement.ended_here(session_id)) is not None:
            return await self._after_end(ended, session_id, payment_id, status)
        async with self._uow.read() as tx:
            seen = await tx.sessions.get_payment(session_id)
        if seen is None:
            return "no such session"
        if seen.status is SessionStatus.CONFIRMING:
            if saga_holds(seen, payment_id, status, order_id=order_id):
                return "the saga holds it"
            raise NotYet(f"session {session_id} is still being confirmed")
        if seen.status is SessionStatus.AWAITING_PAYMENT:
            if payment_id and seen.payment_id and payment_id != seen.payment_id:
                return "another payment"
            if status not in _SUCCEEDED and status not in _FAILED:
                return "still waiting"
            async with self._uow.read() as tx:
                session = await tx.sessions.get(session_id)
            if session is None:
                return "no such session"
            # Moved on since the narrow read (a poll claimed it): the conditional claim refuses, as it did when one
            # read decided.
            if status in _SUCCEEDED:
                return await self._complete(session)
            cause = f"the payment failed at the provider ({status.value.lower()})"
            return await self._fail(session, cause, Reason.PAYMENT_DECLINED)
        return await self._after_end(seen.status, session_id, payment_id, status)

    async def _after_end(self, seen: SessionStatus, session_id: str, payment_id: str, status: PaymentStatus) -> str:
        """A session neither CONFIRMING nor AWAITING_PAYMENT: a success for one that ended without an order is given
        back; anything else is nothing to do."""
        if seen in _ENDED and payment_id and status in _SUCCEEDED:
            return await self._give_back(session_id, payment_id, status)
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

    async def _give_back(self, sid: str, payment_id: str, status: PaymentStatus) -> str:
        """A success for a checkout that already failed: let the money go at once."""
        if status is PaymentStatus.CAPTURED:
            payload = {"payment_id": payment_id, "idempotency_key": f"late-{payment_id}", "reason": "order failed"}
            await self._compensator.attempt_or_record(sid, Operation.REFUND_PAYMENT, payload)
            return "late capture refunded"
        payload = {"payment_id": payment_id, "reason": "the checkout had already failed"}
        await self._compensator.attempt_or_record(sid, Operation.VOID_AUTHORIZATION, payload)
        return "late authorization voided"
