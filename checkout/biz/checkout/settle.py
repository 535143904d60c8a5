"""Step 8 of ConfirmCheckout, and the one failure path of a saga that got past step 3.

Shared by the saga itself (:mod:`confirm`), its recovery (:mod:`recovery`) and the completion of
asynchronous payments (:mod:`complete_payment`), so the three end a checkout in exactly the same way.

Protects DESIGN.md §4.1/§4.4 (stock is secured — reservations confirmed — before any money is
taken, and a capture never happens for units the customer no longer holds), §4.2 (one capture: the
payment service claims it by a conditional update, and a recovery resumes rather than repeats),
§4.3 (a failure voids the authorization, found by its key when its answer was lost, and every
compensation that fails goes to the DLQ, never dropped), §4.5 (CartConverted and CheckoutCompleted
are written by the one statement that finishes the session — :class:`~checkout.biz.ports.SessionEnd`,
CartConverted only with the cart's move) and §3's replay rule: that statement also keeps the answer
owed to the request that drove the saga (:func:`~checkout.biz.checkout.replay.answer_owed`), so no
crash leaves a finished session whose request's repeat can't learn how it ended. Whoever calls
holds the saga's :class:`Lease`: each step runs under it, each write is fenced by it, and a caller
that lost it stops (LeaseLost) rather than settle or undo what its successor now owns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from checkout.biz.checkout.compensations import Compensator
from checkout.biz.checkout.lease import Lease
from checkout.biz.checkout.replay import answer_owed, error_record, keep_answer
from checkout.biz.kept import Kept
from checkout.biz.policy import CheckoutPolicy
from checkout.biz.ports import FunnelEvents, Gateways, NewEvent, NoFunnelEvents, SessionEnd, UnitOfWork
from checkout.biz.retry import retrying
from checkout.model.cart import CartStatus
from checkout.model.catalog import OrderStatus, PaymentOutcome, PaymentStatus
from checkout.model.compensation import NewCompensation, Operation
from checkout.model.session import ConfirmResult, SagaState, SagaStep, Session, SessionStatus
from kernel.errors import DomainError, Reason, Unavailable

__all__ = ["Settlement"]

log = logging.getLogger("kassa.checkout.settle")

T = TypeVar("T")

_RECORDED_STATUS = {
    PaymentOutcome.CAPTURED: OrderStatus.CONFIRMED,
    PaymentOutcome.AUTHORIZED: OrderStatus.CONFIRMED,
    PaymentOutcome.CASH_ON_DELIVERY: OrderStatus.AWAITING_SHIPMENT,
    PaymentOutcome.FAILED: OrderStatus.PAYMENT_FAILED,
}
# Statuses whose authorization holds nothing to void.
_NOTHING_HELD = frozenset({PaymentStatus.DECLINED, PaymentStatus.FAILED, PaymentStatus.VOIDED})


@dataclass
class _Outcome:
    """What settling did, turned into the session's end and the caller's answer."""

    order_status: OrderStatus
    payment_status: PaymentStatus
    failed: list[NewCompensation] = field(default_factory=list)


class Settlement:
    """``remember_ended``: how many of the sessions it ended last (COMPLETED or CANCELLED, both final) this
    process remembers, each for ``remember_seconds``, so a payment event for one is decided without reading it
    (:meth:`ended_here`)."""

    def __init__(
        self,
        uow: UnitOfWork,
        gateways: Gateways,
        compensator: Compensator,
        policy: CheckoutPolicy,
        *,
        funnel: FunnelEvents | None = None,
        remember_ended: int = 1024,
        remember_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._uow = uow
        self._g = gateways
        self._compensator = compensator
        self._policy = policy
        self._funnel = funnel or NoFunnelEvents()
        self._ended: Kept[str, SessionStatus] = Kept(remember_ended, remember_seconds, clock=clock)

    def ended_here(self, session_id: str) -> SessionStatus | None:
        """How this process ended the session (COMPLETED or CANCELLED), if it did lately: a status no session
        leaves, so what the database holds for it now; None when not remembered."""
        return self._ended.get(session_id)

    def _remember(self, session_id: str, status: SessionStatus) -> None:
        self._ended.put(session_id, status)

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        return await retrying(self._policy.retry, call)

    # --- step 8 ---------------------------------------------------------------------------

    async def settle(self, session: Session, state: SagaState, lease: Lease) -> ConfirmResult:
        """Finish a saga whose order exists: wait for an asynchronous payment, or take the money.

        Raises Unavailable (the session stays CONFIRMING at SETTLE_PAYMENT for the recovery worker)
        only when the stock could not be secured for an outage: without it, no money is taken.
        Raises LeaseLost, having done nothing more, when another owner claimed the saga.
        """
        if state.payment_status is PaymentStatus.REQUIRES_ACTION:
            return await self._await_payment(session, state, lease)
        sid = session.session_id
        try:
            async with lease.step("confirm_stock"):
                await self._call(lambda: self._g.inventory.confirm_reservations(sid))
        except Unavailable:
            await lease.progress(SagaStep.SETTLE_PAYMENT, state)
            raise
        except DomainError as refusal:
            log.warning("session %s: stock no longer held (%s); the payment is voided", sid, refusal.message)
            cause = f"the reserved stock was released before payment: {refusal.message}"
            return await self.fail(session, state, lease, cause, reason=Reason.OUT_OF_STOCK)

        async with lease.step("capture"):
            outcome = await self._take_payment(session, state, lease)
        if outcome.order_status is OrderStatus.PAYMENT_FAILED:
            return await self.fail(
                session, state, lease, "the capture was refused", outcome.failed, reason=Reason.PAYMENT_DECLINED
            )
        # An order cancelled meanwhile gets its coupon use back from promotion's OrderCancelled consumer.
        if state.promo_codes and outcome.order_status is not OrderStatus.CANCELLED:
            await lease.keep()
            await self._attempt(outcome.failed, sid, Operation.CONFIRM_PROMOTION, {"reservation_ref": sid})
        return await self._finish(session, state, lease, outcome, CartStatus.CONVERTED)

    async def _take_payment(self, session: Session, state: SagaState, lease: Lease) -> _Outcome:
        """Capture (or mark cash on delivery, or nothing to pay) and tell the order."""
        sid, oid, pid = session.session_id, state.order_id, state.payment_id
        failed: list[NewCompensation] = []
        pending = _Outcome(OrderStatus(state.order_status or OrderStatus.PENDING_PAYMENT), PaymentStatus.AUTHORIZED)
        if state.payment_status is PaymentStatus.CASH_ON_DELIVERY or session.payment_method == "cod":
            status = await self._record(
                failed, sid, oid, pid, outcome=PaymentOutcome.CASH_ON_DELIVERY, cause="cash on delivery"
            )
            return _Outcome(status or pending.order_status, PaymentStatus.CASH_ON_DELIVERY, failed)
        if state.free:
            status = await self._record(failed, sid, oid, "", outcome=PaymentOutcome.CAPTURED, cause="nothing to pay")
            return _Outcome(status or pending.order_status, PaymentStatus.CAPTURED, failed)
        if self._policy.capture_on_shipment:
            # The hold stays open until OrderShipped (payment captures it) or OrderCancelled (payment voids it):
            # no money is taken for an order that never ships, and the order is never without its hold.
            status = await self._record(
                failed,
                sid,
                oid,
                pid,
                outcome=PaymentOutcome.AUTHORIZED,
                cause="payment authorized; captured on shipment",
            )
            return _Outcome(status or pending.order_status, PaymentStatus.AUTHORIZED, failed)
        try:
            captured = await self._call(lambda: self._g.payment.capture(pid, oid))
        except Unavailable as exc:
            # The stock is confirmed; the capture is retried from the DLQ, which then tells the order.
            failed.append(
                NewCompensation(sid, Operation.CAPTURE_PAYMENT, {"payment_id": pid, "order_id": oid}, str(exc))
            )
            return _Outcome(pending.order_status, PaymentStatus.AUTHORIZED, failed)
        except DomainError as refusal:
            log.warning("session %s: capture refused: %s", sid, refusal.message)
            return _Outcome(OrderStatus.PAYMENT_FAILED, PaymentStatus.FAILED, failed)
        await lease.keep()
        status = await self._record(failed, sid, oid, pid, outcome=PaymentOutcome.CAPTURED, cause="payment captured")
        return _Outcome(status or pending.order_status, captured.status, failed)

    async def _record(
        self, failed: list[NewCompensation], sid: str, oid: str, pid: str, *, outcome: PaymentOutcome, cause: str
    ) -> OrderStatus | None:
        """Tell the order its payment outcome; the status it is in now (None when that is not known)."""
        try:
            ref = await self._call(lambda: self._g.order.record_payment(oid, pid, outcome, cause))
        except Unavailable as exc:
            payload = {"order_id": oid, "payment_id": pid, "outcome": outcome.value, "cause": cause}
            failed.append(NewCompensation(sid, Operation.RECORD_PAYMENT, payload, str(exc)[:1000]))
            return None
        except DomainError as refusal:
            # The order moved on without us (cancelled meanwhile): payment refunds or voids on its
            # OrderCancelled event, so nothing is kept for an order that won't ship.
            log.warning("session %s: order %s refused %s: %s", sid, oid, outcome.value, refusal.message)
            return OrderStatus(refusal.metadata.get("status") or OrderStatus.CANCELLED)
        return ref.status if ref.status is not OrderStatus.UNSPECIFIED else _RECORDED_STATUS[outcome]

    async def _attempt(self, failed: list[NewCompensation], sid: str, op: Operation, payload: dict[str, Any]) -> None:
        if (item := await self._compensator.attempt(sid, op, payload)) is not None:
            failed.append(item)

    async def _await_payment(self, session: Session, state: SagaState, lease: Lease) -> ConfirmResult:
        """The customer must act (3-D Secure): hold stock and promotion usage over the payment window."""
        sid = session.session_id
        window = self._policy.payment_window_seconds
        await lease.keep()
        try:
            await self._call(lambda: self._g.inventory.extend_reservations(sid, window))
        except Exception as exc:
            # Not fatal: completion confirms the stock before capturing, and fails cleanly if it lapsed.
            log.warning("session %s: reservations not extended over the payment window: %s", sid, exc)
        state.order_status = OrderStatus.PENDING_PAYMENT
        result = _result(session, state, OrderStatus.PENDING_PAYMENT, PaymentStatus.REQUIRES_ACTION)
        async with lease.step("finalize"), self._uow.transaction() as tx:
            moved = await tx.sessions.await_payment(
                sid, state=state, order_id=state.order_id, result=result, window_seconds=window, attempt=lease.attempt
            )
            if not moved:
                raise lease.lost()
            await keep_answer(tx, session, result)
        self._funnel.checkout_awaiting_payment()
        return result

    # --- the failure path ----------------------------------------------------------------

    async def fail(
        self,
        session: Session,
        state: SagaState,
        lease: Lease,
        cause: str,
        failed: list[NewCompensation] | None = None,
        *,
        answer: DomainError | None = None,
        reason: str = Reason.UNAVAILABLE,
    ) -> ConfirmResult:
        """Undo whatever the saga did, in reverse: no hold, no reservation, no coupon use is left behind.

        Voids the authorization (by its id, or by its key when the authorize call went unanswered),
        releases the reservations and the promotion usage, and fails the order when one exists (its
        OrderPaymentFailed event lets warehouse restock units already confirmed). The session ends
        CANCELLED and its cart is ACTIVE again, so the customer can start checkout once more.
        ``answer`` is what the request that drove the saga is told: persisted with the undo's first write
        (so a recovery that finishes the undo keeps it too) and kept by its last. Without one, an answer
        persisted before stands, else the result returned here is the answer. The funnel counts the failure by the
        answer's reason, else by ``reason``.
        Raises LeaseLost, having undone nothing, when another owner claimed the saga: it undoes.
        """
        sid = session.session_id
        failed = list(failed or [])
        if answer is not None:
            state.failure = error_record(answer)
        await lease.progress(SagaStep.COMPENSATING, state)
        reason = cause[:200]
        if state.payment_status not in _NOTHING_HELD and (state.payment_id or state.authorize is not None):
            void: dict[str, Any] = {"reason": reason}
            if state.authorize is not None:
                void["authorize_key"] = state.authorize.idempotency_key
            if state.payment_id and state.payment_status is not PaymentStatus.PENDING:
                void["payment_id"] = state.payment_id  # known: void exactly it, no lookup by key
            await lease.keep()
            await self._attempt(failed, sid, Operation.VOID_AUTHORIZATION, void)
        await lease.keep()
        await self._attempt(failed, sid, Operation.RELEASE_RESERVATIONS, {"reservation_ref": sid, "reason": reason})
        if state.promo_codes:
            await lease.keep()
            await self._attempt(failed, sid, Operation.RELEASE_PROMOTION, {"reservation_ref": sid})
        order_status = OrderStatus.UNSPECIFIED
        if state.order_id:
            await lease.keep()
            recorded = await self._record(
                failed, sid, state.order_id, state.payment_id, outcome=PaymentOutcome.FAILED, cause=cause
            )
            order_status = recorded or OrderStatus.PAYMENT_FAILED
        paid = PaymentStatus.VOIDED if state.payment_id or state.authorize else PaymentStatus.UNSPECIFIED
        if state.payment_status in _NOTHING_HELD:
            paid = state.payment_status
        outcome = _Outcome(order_status, paid, failed)
        return await self._finish(session, state, lease, outcome, CartStatus.ACTIVE, last_error=cause, reason=reason)

    async def _finish(
        self,
        session: Session,
        state: SagaState,
        lease: Lease,
        outcome: _Outcome,
        cart_status: CartStatus,
        *,
        last_error: str = "",
        reason: str = Reason.UNAVAILABLE,
    ) -> ConfirmResult:
        sid, oid = session.session_id, state.order_id
        state.order_status, state.payment_status = outcome.order_status, outcome.payment_status
        result = _result(session, state, outcome.order_status, outcome.payment_status)
        converted = cart_status is CartStatus.CONVERTED
        status = SessionStatus.COMPLETED if converted else SessionStatus.CANCELLED
        last_step = SagaStep.DONE if converted else SagaStep.COMPENSATING
        converted_event = {"cart_id": session.cart_id, "customer_id": session.customer_id, "order_id": oid,
                           "session_id": sid}  # fmt: skip
        # The session's end, the answer kept, the DLQ entries, the cart's move and the events: one statement, each
        # write conditional on the session's fenced end (and CartConverted on the cart's move), so an attempt that
        # lost its lease writes none of it — what it failed to do, its successor does.
        end = SessionEnd(
            cart_id=session.cart_id,
            cart_to=cart_status,
            kept=answer_owed(session, state.failure if state.failure and not converted else result),
            compensations=outcome.failed,
            if_cart_moved=[NewEvent("CartConverted", session.cart_id, converted_event)] if converted else [],
            events=[NewEvent("CheckoutCompleted", sid, _completed_event(session, result))] if converted else [],
        )
        async with lease.step("finalize"):
            async with self._uow.statement() as tx:
                finished = await tx.sessions.finish(
                    sid, status, step=last_step, state=state, order_id=oid, result=result if oid else None,
                    last_error=last_error[:1000], attempt=lease.attempt, end=end,
                )  # fmt: skip
            if not finished:
                raise lease.lost()
        self._remember(sid, status)  # committed: the session's final status
        if converted:
            self._funnel.checkout_confirmed(result.order_status)
        else:
            self._funnel.checkout_failed(state.failure.reason if state.failure else reason)
        return result


def _result(session: Session, state: SagaState, order_status: OrderStatus, payment: PaymentStatus) -> ConfirmResult:
    draft = state.order_draft
    return ConfirmResult(
        session_id=session.session_id,
        order_id=state.order_id,
        order_status=order_status.value,
        payment_status=payment.value,
        next_action_url=state.next_action_url if payment is PaymentStatus.REQUIRES_ACTION else "",
        currency_code=session.currency_code,
        grand_total_minor=draft.grand_total_minor if draft else 0,
    )


def _completed_event(session: Session, result: ConfirmResult) -> dict[str, Any]:
    return {
        "session_id": session.session_id,
        "cart_id": session.cart_id,
        "customer_id": session.customer_id,
        "order_id": result.order_id,
        "order_status": result.order_status,
        "payment_status": result.payment_status,
        "grand_total": {"currency_code": result.currency_code, "amount_minor": result.grand_total_minor},
    }
