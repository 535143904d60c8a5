"""ConfirmCheckout: the saga of DESIGN.md §3 that turns an OPEN session into an order.

Protects DESIGN.md §4.2 (double charge: a Redis lock plus a durable CONFIRMING guard in Postgres,
a payment idempotency key derived from the session, CreateOrder idempotent on the session, a
finished result replayed for a repeated key), §4.3 (money leak: an authorization is voided when a
later step fails, and a compensation that fails goes to the DLQ, never dropped), §4.4 (stock leak:
reservations released on failure, confirmed on success) and §4.6 (bad input refused before anything
is written). Progress is persisted on the session before every remote step, so a crash is resumed
forward by the recovery worker once the order may exist, and compensated before that.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from checkout.biz.checkout.access import load_owned_session
from checkout.biz.checkout.compensations import Compensator
from checkout.biz.checkout.pricing_engine import PricingEngine, promotion_lines, split_discount
from checkout.biz.checkout.update_state import pricing_input, session_not_open
from checkout.biz.policy import CheckoutPolicy
from checkout.biz.ports import Gateways, IdempotencyStore, UnitOfWork
from checkout.biz.retry import retrying
from checkout.biz.validation import validate_id
from checkout.model.actor import Actor
from checkout.model.cart import CartStatus
from checkout.model.catalog import (
    AuthorizeRequest,
    OrderDraft,
    OrderLine,
    OrderStatus,
    PaymentOutcome,
    PaymentStatus,
)
from checkout.model.compensation import NewCompensation, Operation
from checkout.model.session import ConfirmResult, Preview, SagaState, SagaStep, Session, SessionStatus
from infra.errors import (
    Aborted,
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    Reason,
    ResourceExhausted,
    Unavailable,
)
from infra.money import Money

__all__ = ["ConfirmCheckout", "authorize_key", "require_order_fields"]

log = logging.getLogger("kassa.checkout.confirm")

T = TypeVar("T")

_RECORDED_STATUS = {
    PaymentOutcome.CAPTURED: OrderStatus.CONFIRMED,
    PaymentOutcome.CASH_ON_DELIVERY: OrderStatus.AWAITING_SHIPMENT,
    PaymentOutcome.FAILED: OrderStatus.PAYMENT_FAILED,
}


def authorize_key(session_id: str) -> str:
    """Derived from the session, not the client's key, so every retry and recovery reuses it."""
    return f"checkout:{session_id}:authorize"


class _PromotionChanged(Exception):
    def __init__(self, actual_grand_total: int) -> None:
        super().__init__("promotion discount changed")
        self.actual = actual_grand_total


def _consume(task: asyncio.Future[Any]) -> None:
    """The saga runs on when its caller goes away; its outcome is then only logged."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("confirm finished with %r after its caller left", task.exception())


class ConfirmCheckout:
    def __init__(
        self,
        uow: UnitOfWork,
        gateways: Gateways,
        engine: PricingEngine,
        store: IdempotencyStore,
        compensator: Compensator,
        *,
        policy: CheckoutPolicy,
    ) -> None:
        self._uow = uow
        self._g = gateways
        self._engine = engine
        self._store = store
        self._compensator = compensator
        self._policy = policy

    async def __call__(
        self, actor: Actor, session_id: str, idempotency_key: str, expected: Money | None
    ) -> ConfirmResult:
        session_id = validate_id("session_id", session_id)
        if not 1 <= len(idempotency_key) <= 255 or not idempotency_key.strip():
            raise InvalidArgument("idempotency_key", "must be 1 to 255 characters")
        if expected is None:
            raise InvalidArgument("expected_grand_total", "is required: send the grand total the customer saw")
        session = await load_owned_session(self._uow, actor, session_id)
        if expected.currency_code != session.currency_code:
            raise InvalidArgument(
                "expected_grand_total.currency_code",
                f"must be {session.currency_code}, the session's currency",
                reason=Reason.CURRENCY_MISMATCH,
            )
        if session.status is SessionStatus.OPEN:
            require_order_fields(session)  # refused before anything is written; re-checked under the guard
        lock_key = f"{session.customer_id}:{idempotency_key}"
        replay = await self._cached(lock_key, session_id)
        if replay is not None:
            return replay
        # A client that disconnects must not stop a saga halfway through moving money.
        task = asyncio.ensure_future(self._locked(lock_key, session_id, idempotency_key, expected))
        task.add_done_callback(_consume)
        return await asyncio.shield(task)

    async def _cached(self, lock_key: str, session_id: str) -> ConfirmResult | None:
        raw = await self._store.get_result(lock_key)
        if raw is None:
            return None
        result = ConfirmResult.from_dict(json.loads(raw))
        if result.session_id != session_id:
            raise AlreadyExists(
                "this idempotency key was already used for another checkout session",
                reason=Reason.IDEMPOTENCY_KEY_REUSED,
            )
        return result

    async def _locked(self, lock_key: str, session_id: str, idempotency_key: str, expected: Money) -> ConfirmResult:
        token = await self._store.acquire(lock_key)
        if token is None:
            raise Aborted("this checkout is already being confirmed", reason=Reason.CHECKOUT_IN_PROGRESS)
        try:
            replay = await self._cached(lock_key, session_id)
            if replay is not None:
                return replay
            async with self._uow() as tx:
                started = await tx.sessions.begin_confirm(session_id, idempotency_key)
            if started is None:
                result = await self._not_started(session_id, idempotency_key)
            else:
                result = await self._saga(started, expected)
            await self._store.put_result(lock_key, json.dumps(result.to_dict()).encode())
            return result
        finally:
            await self._store.release(lock_key, token)

    async def _not_started(self, session_id: str, idempotency_key: str) -> ConfirmResult:
        """The durable guard refused: replay a finished confirmation or say why not."""
        async with self._uow.read() as tx:
            session = await tx.sessions.get(session_id)
        assert session is not None
        if session.status is SessionStatus.COMPLETED and session.idempotency_key == idempotency_key and session.result:
            return session.result
        if session.status is SessionStatus.CONFIRMING:
            raise Aborted("this checkout is already being confirmed", reason=Reason.CHECKOUT_IN_PROGRESS)
        raise session_not_open(session, datetime.now(UTC))

    # --- the saga -------------------------------------------------------------------------

    async def _saga(self, session: Session, expected: Money) -> ConfirmResult:
        # Steps 2-3 change nothing outside this service: on any failure the session is simply OPEN again.
        preview: Preview | None = None
        try:
            await self._check(session)
            preview = await self._engine.compute(pricing_input(session))
            if preview.grand_total_minor != expected.amount_minor:
                raise Aborted(
                    f"the total is now {preview.grand_total}, not {expected}",
                    reason=Reason.PRICE_CHANGED,
                    metadata={
                        "expected": str(expected.amount_minor),
                        "actual": str(preview.grand_total_minor),
                        "currency_code": preview.currency_code,
                    },
                )
        except Exception as exc:
            await self._reopen(session, exc, preview)
            raise

        state = SagaState(promo_codes=preview.applied_codes, preview=preview.to_dict())
        sid, cur = session.session_id, session.currency_code
        try:
            if state.promo_codes:
                await self._progress(sid, SagaStep.RESERVE_PROMOTION, state)
                reserved = await self._call(
                    lambda: self._g.promotion.reserve_usage(
                        sid, state.promo_codes, promotion_lines(preview.lines, cur),
                        Money(cur, preview.shipping_minor), cur, customer_id=session.customer_id,
                    )
                )  # fmt: skip
                state.promo_reserved = True
                item, shipping = split_discount(reserved, preview.subtotal_minor, preview.shipping_minor)
                if item + shipping != preview.discount_minor:
                    raise _PromotionChanged(preview.grand_total_minor - (item + shipping - preview.discount_minor))

            # No progress write of its own: a recovery from the step before releases the reservations anyway.
            await self._call(lambda: self._g.inventory.extend_reservations(sid, self._policy.confirm_ttl_seconds))
            state.reservations_extended = True

            request = AuthorizeRequest(
                idempotency_key=authorize_key(sid),
                order_ref=sid,
                amount=preview.grand_total,
                payment_method=session.payment_method,
                customer_id=session.customer_id,
                customer_email=session.email,
            )
            state.authorize = request.to_dict()
            await self._progress(sid, SagaStep.AUTHORIZE_PAYMENT, state)
            payment = await self._call(lambda: self._g.payment.authorize(request))
            state.payment_id, state.payment_status = payment.payment_id, payment.status.value
            state.next_action_url = payment.next_action_url
            if payment.status is PaymentStatus.DECLINED:
                raise FailedPrecondition(
                    f"the payment was declined ({payment.failure_code or 'declined'})",
                    reason=Reason.PAYMENT_DECLINED,
                    metadata={"failure_code": payment.failure_code},
                )
            if payment.status not in (
                PaymentStatus.AUTHORIZED, PaymentStatus.REQUIRES_ACTION, PaymentStatus.CASH_ON_DELIVERY,
            ):  # fmt: skip
                raise Unavailable(f"the payment could not be authorized ({payment.status.value}); retry")

            draft = _order_draft(session, preview, payment.payment_id)
            state.order_draft = draft.to_dict()
            await self._progress(sid, SagaStep.CREATE_ORDER, state)
            order = await self._call(lambda: self._g.order.create_order(draft))
            state.order_id, state.order_status = order.order_id, order.status.value
        except _PromotionChanged as changed:
            await self._compensator.attempt_or_record(sid, Operation.RELEASE_PROMOTION, {"reservation_ref": sid})
            error = Aborted(
                "a promotion changed while confirming; review the new total",
                reason=Reason.PRICE_CHANGED,
                metadata={"expected": str(expected.amount_minor), "actual": str(changed.actual), "currency_code": cur},
            )
            await self._reopen(session, error, None)
            raise error from None
        except Unavailable:
            if state.order_draft and not state.order_id:
                # CreateOrder's outcome is unknown: the order may exist, and voiding its payment now could
                # leave an order that can never be paid. Leave the session CONFIRMING at CREATE_ORDER; the
                # recovery worker resends it (idempotent on the session) and settles, or compensates on a
                # refusal. A retry with the same key meanwhile gets CHECKOUT_IN_PROGRESS, then the result.
                log.warning("CreateOrder outcome unknown for session %s; left for recovery", sid)
                raise
            await self._compensate(session, state, sys.exc_info()[1])
            raise
        except Exception as exc:
            await self._compensate(session, state, exc)
            raise
        return await self._settle(session, state)

    async def _check(self, session: Session) -> None:
        """Step 2: the session has everything an order needs, and its cart is still held by it."""
        require_order_fields(session)
        async with self._uow.read() as tx:
            cart = await tx.carts.get_head(session.cart_id)
        if cart is None or cart.status is not CartStatus.CHECKOUT:
            raise FailedPrecondition(
                f"cart {session.cart_id} is no longer held by this session", reason=Reason.SESSION_NOT_OPEN
            )
        # A cart held by a session can't change, so its lines are the session's skus.
        if len({ln.sku for ln in session.lines}) > self._policy.max_cart_items:
            raise ResourceExhausted(
                f"a cart holds at most {self._policy.max_cart_items} lines", reason=Reason.CART_TOO_LARGE
            )
        if session.subtotal_minor < self._policy.min_order_minor:
            minimum = Money(session.currency_code, self._policy.min_order_minor)
            raise FailedPrecondition(
                f"the minimum order is {minimum}",
                reason=Reason.BELOW_MINIMUM_ORDER,
                metadata={"min_order_minor": str(self._policy.min_order_minor)},
            )

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        return await retrying(self._policy.retry, call)

    async def _progress(self, session_id: str, step: SagaStep, state: SagaState) -> None:
        async with self._uow() as tx:
            await tx.sessions.save_progress(session_id, step, state)

    async def _reopen(self, session: Session, exc: BaseException, preview: Preview | None) -> None:
        async with self._uow() as tx:
            await tx.sessions.reopen(session.session_id, f"{type(exc).__name__}: {exc}"[:1000], preview)

    async def _compensate(self, session: Session, state: SagaState, exc: BaseException | None) -> None:
        """Undo steps 4-7 in reverse; the session is CANCELLED and its cart usable again."""
        sid = session.session_id
        await self._progress(sid, SagaStep.COMPENSATING, state)
        reason = f"checkout failed: {exc}" if exc is not None else "checkout abandoned"
        steps: list[tuple[Operation, dict[str, Any]]] = []
        if state.payment_id:
            steps.append((Operation.VOID_AUTHORIZATION, {"payment_id": state.payment_id, "reason": reason[:200]}))
        elif state.authorize and not (isinstance(exc, DomainError) and not isinstance(exc, Unavailable)):
            # The authorize call never answered: find out (same key) and void whatever it held.
            steps.append((Operation.VOID_AUTHORIZATION, {"authorize": state.authorize, "reason": reason[:200]}))
        steps.append((Operation.RELEASE_RESERVATIONS, {"reservation_ref": sid, "reason": reason[:200]}))
        if state.promo_codes:
            steps.append((Operation.RELEASE_PROMOTION, {"reservation_ref": sid}))
        failed = [f for op, payload in steps if (f := await self._compensator.attempt(sid, op, payload))]
        async with self._uow() as tx:
            for item in failed:
                await tx.compensations.add(item)
            if await tx.sessions.finish(
                sid, SessionStatus.CANCELLED, step=SagaStep.COMPENSATING, state=state, last_error=reason[:1000]
            ):
                await tx.carts.transition(session.cart_id, {CartStatus.CHECKOUT}, CartStatus.ACTIVE)

    async def _settle(self, session: Session, state: SagaState) -> ConfirmResult:
        """Step 8: settle the payment, confirm stock and coupons, finish. The order stands whatever fails."""
        sid, oid, pid = session.session_id, state.order_id, state.payment_id
        # Not persisted as a step of its own: a recovery from CREATE_ORDER resends CreateOrder (idempotent
        # on the session), gets the same order and settles from here, exactly as it would from this step.
        failed: list[NewCompensation] = []
        order_status = OrderStatus(state.order_status or OrderStatus.PENDING_PAYMENT)
        payment_status = PaymentStatus(state.payment_status or PaymentStatus.AUTHORIZED)
        cart_status = CartStatus.CONVERTED

        async def record(outcome: PaymentOutcome, cause: str) -> OrderStatus:
            payload = {"order_id": oid, "payment_id": pid, "outcome": outcome.value, "cause": cause}
            try:
                ref = await self._call(lambda: self._g.order.record_payment(oid, pid, outcome, cause))
            except Exception as exc:
                failed.append(NewCompensation(sid, Operation.RECORD_PAYMENT, payload, str(exc)[:1000]))
                return order_status
            return ref.status if ref.status is not OrderStatus.UNSPECIFIED else _RECORDED_STATUS[outcome]

        async def attempt(op: Operation, payload: dict[str, Any]) -> None:
            if (item := await self._compensator.attempt(sid, op, payload)) is not None:
                failed.append(item)

        if payment_status is PaymentStatus.CASH_ON_DELIVERY or session.payment_method == "cod":
            payment_status = PaymentStatus.CASH_ON_DELIVERY
            order_status = await record(PaymentOutcome.CASH_ON_DELIVERY, "cash on delivery")
        elif payment_status is PaymentStatus.AUTHORIZED:
            try:
                captured = await self._call(lambda: self._g.payment.capture(pid, oid))
                payment_status = captured.status
            except Unavailable as exc:
                failed.append(
                    NewCompensation(sid, Operation.CAPTURE_PAYMENT, {"payment_id": pid, "order_id": oid}, str(exc))
                )
            except DomainError as refusal:
                payment_status, cart_status = PaymentStatus.FAILED, CartStatus.ACTIVE
                order_status = await record(PaymentOutcome.FAILED, f"capture refused: {refusal.message}")
                await attempt(Operation.VOID_AUTHORIZATION, {"payment_id": pid, "reason": "capture refused"})
                await attempt(Operation.RELEASE_RESERVATIONS, {"reservation_ref": sid, "reason": "capture refused"})
                if state.promo_codes:
                    await attempt(Operation.RELEASE_PROMOTION, {"reservation_ref": sid})
        if payment_status is PaymentStatus.CAPTURED:
            order_status = await record(PaymentOutcome.CAPTURED, "payment captured")

        if cart_status is CartStatus.CONVERTED:
            await attempt(Operation.CONFIRM_RESERVATIONS, {"reservation_ref": sid})
            if state.promo_codes:
                await attempt(Operation.CONFIRM_PROMOTION, {"reservation_ref": sid})

        draft = OrderDraft.from_dict(state.order_draft or {})
        state.order_status, state.payment_status = order_status.value, payment_status.value
        result = ConfirmResult(
            session_id=sid,
            order_id=oid,
            order_status=order_status.value,
            payment_status=payment_status.value,
            next_action_url=state.next_action_url if payment_status is PaymentStatus.REQUIRES_ACTION else "",
            currency_code=session.currency_code,
            grand_total_minor=draft.grand_total_minor,
        )
        current: Session | None = None
        async with self._uow() as tx:
            for item in failed:
                await tx.compensations.add(item)
            finished = await tx.sessions.finish(
                sid, SessionStatus.COMPLETED, step=SagaStep.DONE, state=state, order_id=oid, result=result
            )
            if finished:
                converted = await tx.carts.transition(session.cart_id, {CartStatus.CHECKOUT}, cart_status)
                if converted and cart_status is CartStatus.CONVERTED:
                    await tx.add_event(
                        "CartConverted",
                        session.cart_id,
                        {"cart_id": session.cart_id, "customer_id": session.customer_id, "order_id": oid,
                         "session_id": sid},
                    )  # fmt: skip
                await tx.add_event("CheckoutCompleted", sid, _completed_event(session, result))
            else:
                current = await tx.sessions.get(sid)
        if not finished and current is not None and current.result is not None:
            return current.result  # a recovery finished it first; its answer stands
        return result

    # --- recovery -------------------------------------------------------------------------

    async def recover(self, session: Session) -> None:
        """Finish or undo a saga whose replica died: forward once the order may exist, else compensate."""
        state = session.saga_state
        step = session.saga_step
        if step is not None and step.order_may_exist and state.order_draft:
            if not state.order_id:
                draft = OrderDraft.from_dict(state.order_draft)
                try:
                    order = await self._call(lambda: self._g.order.create_order(draft))
                except Unavailable:
                    raise
                except DomainError as refusal:
                    await self._compensate(session, state, refusal)
                    return
                state.order_id, state.order_status = order.order_id, order.status.value
            result = await self._settle(session, state)
            if session.idempotency_key:
                await self._store.put_result(
                    f"{session.customer_id}:{session.idempotency_key}", json.dumps(result.to_dict()).encode()
                )
            return
        await self._compensate(session, state, None)


def require_order_fields(session: Session) -> None:
    """What an order can't do without, named by its session field."""
    for field, value in (
        ("email", session.email),
        ("shipping_address", session.shipping_address),
        ("shipping_method", session.shipping_method),
        ("payment_method", session.payment_method),
    ):
        if not value:
            raise InvalidArgument(field, "is required before confirming; set it with UpdateCheckoutState")


def _order_draft(session: Session, preview: Preview, payment_id: str) -> OrderDraft:
    assert session.shipping_address is not None
    return OrderDraft(
        checkout_session_id=session.session_id,
        customer_id=session.customer_id,
        email=session.email,
        currency_code=session.currency_code,
        lines=[
            OrderLine(ln.sku, ln.name, ln.quantity, ln.unit_price_minor, ln.warehouse_id, ln.tax_class)
            for ln in preview.lines
        ],
        discounts=[(d.code, d.amount_minor) for d in preview.discounts],
        subtotal_minor=preview.subtotal_minor,
        discount_minor=preview.discount_minor,
        shipping_minor=preview.shipping_minor,
        tax_minor=preview.tax_minor,
        grand_total_minor=preview.grand_total_minor,
        shipping_address=session.shipping_address,
        billing_address=session.billing_address,
        shipping_method=session.shipping_method,
        payment_id=payment_id,
        payment_method=session.payment_method,
        notes=session.notes,
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
