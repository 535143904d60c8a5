"""ConfirmCheckout: the saga of DESIGN.md §3 that turns an OPEN session into an order.

Protects DESIGN.md §4.2 (double charge: a Redis lock plus a durable CONFIRMING guard in Postgres,
a payment idempotency key derived from the session, CreateOrder idempotent on the session, a
finished request replayed for a repeated key — failures included, kept by the saga's last write —
see :mod:`replay`), §4.3 (money leak: the order service checks the authorized amount against its own
total, and any later failure voids the authorization through :meth:`Settlement.fail`) and §4.6 (bad
input refused before anything is written). Progress is persisted on the session before every remote
step whose recovery differs, so a crash is resumed forward by the recovery worker once the order may
exist, and compensated before that. The durable guard starts a saga attempt and every write after it
is fenced by it (:mod:`lease`): a saga that stalled past its lease and was taken over stops at its
next step, touching nothing. Each step of DESIGN.md §3 is one method below, run between its fault
points; step 8 lives in :mod:`settle`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, overload

from checkout.biz.checkout.access import load_owned_session
from checkout.biz.checkout.compensations import Compensator
from checkout.biz.checkout.lease import Lease, LeaseLost, Leases
from checkout.biz.checkout.pricing_engine import PricingEngine, promotion_lines, split_discount
from checkout.biz.checkout.recent import RecentSessions
from checkout.biz.checkout.replay import Replays, answer, error_record, fingerprint, keep_answer, undone
from checkout.biz.checkout.settle import Settlement
from checkout.biz.checkout.update_state import pricing_input, session_not_open
from checkout.biz.policy import CheckoutPolicy
from checkout.biz.ports import FunnelEvents, Gateways, IdempotencyStore, NoFunnelEvents, UnitOfWork
from checkout.biz.retry import retrying
from checkout.model.cart import CartStatus
from checkout.model.catalog import AuthorizeRequest, OrderDraft, OrderLine, PaymentStatus
from checkout.model.compensation import Operation
from checkout.model.session import ConfirmResult, Preview, SagaState, SagaStep, Session, SessionStatus
from kernel.caller import Caller
from kernel.errors import (
    Aborted,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    Reason,
    ResourceExhausted,
    Unavailable,
)
from kernel.money import Money

__all__ = ["ConfirmCheckout", "authorize_key", "require_order_fields"]

log = logging.getLogger("kassa.checkout.confirm")

T = TypeVar("T")

_AUTHORIZED = frozenset({PaymentStatus.AUTHORIZED, PaymentStatus.REQUIRES_ACTION, PaymentStatus.CASH_ON_DELIVERY})
# A session in these has its order placed and its answer (``result``) stored on it.
_FINISHED = frozenset({SessionStatus.COMPLETED, SessionStatus.AWAITING_PAYMENT})


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
        settlement: Settlement,
        policy: CheckoutPolicy,
        funnel: FunnelEvents | None = None,
        recent: RecentSessions | None = None,
    ) -> None:
        self._uow = uow
        self._recent = recent or RecentSessions(0)  # the sessions this replica wrote last (UpdateCheckoutState's)
        self._funnel = funnel or NoFunnelEvents()
        self._g = gateways
        self._engine = engine
        self._lock = store
        self._replays = Replays(uow, policy.replay_ttl_seconds)
        self._compensator = compensator
        self._settlement = settlement
        self._policy = policy
        self._leases = Leases(uow, policy)
        self._running: set[asyncio.Future[ConfirmResult]] = set()

    async def __call__(self, caller: Caller, session_id: str, idempotency_key: str, expected: Money) -> ConfirmResult:
        """The request (session id, idempotency key, the total the customer saw) was checked by the servicer
        (checkout.service.validation.check_confirm_checkout); what needs the session is checked here.

        A session this replica wrote last (``recent``) that refuses nothing of the request is not read first: the
        durable guard starts the saga only if the session is still exactly that one (its ``updated_at``), and the
        request's fingerprint is the one a read would give. Anything else (an answer cached, the lock not taken, a
        session changed since) is decided on the session as it is now, as with a read first."""
        kept = self._recent.recall(caller, session_id)
        if kept is not None and kept.currency_code == expected.currency_code and _has_order_fields(kept):
            request = _Request.on(kept, idempotency_key, expected)
            token, cached = await self._lock.begin(request.lock_key)
            if cached is None and token is not None:
                return await self._run(request, session_id, expected, token, unchanged_since=kept.updated_at)
            return await self._as_read(caller, session_id, idempotency_key, expected, begun=(token, cached))
        return await self._as_read(caller, session_id, idempotency_key, expected)

    async def _as_read(
        self,
        caller: Caller,
        session_id: str,
        idempotency_key: str,
        expected: Money,
        *,
        begun: tuple[str | None, bytes | None] | None = None,
    ) -> ConfirmResult:
        """The request checked on the session as read; ``begun``: Redis already answered (no lock taken)."""
        session = await load_owned_session(self._uow, caller, session_id)
        if expected.currency_code != session.currency_code:
            raise InvalidArgument(
                "expected_grand_total.currency_code",
                f"must be {session.currency_code}, the session's currency",
                reason=Reason.CURRENCY_MISMATCH,
            )
        if session.status is SessionStatus.OPEN:
            require_order_fields(session)  # refused before anything is written; re-checked under the guard
        request = _Request.on(session, idempotency_key, expected)
        # One round trip to Redis: the answer cached for a finished request, or else the lock on the key.
        token, cached = begun if begun is not None else await self._lock.begin(request.lock_key)
        if cached is not None:
            return Replays.replayed(cached, session_id, request.fingerprint)
        return await self._run(request, session_id, expected, token)

    async def _run(
        self,
        request: _Request,
        session_id: str,
        expected: Money,
        token: str | None,
        *,
        unchanged_since: datetime | None = None,
    ) -> ConfirmResult:
        # A client that disconnects must not stop a saga halfway through moving money.
        task = asyncio.ensure_future(self._locked(request, session_id, expected, token, unchanged_since))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        task.add_done_callback(_consume)
        return await asyncio.shield(task)

    async def drain(self, timeout_seconds: float) -> None:
        """Wait (at most ``timeout_seconds``) for the sagas still running: a replica that stops finishes what it
        started, rather than leave sessions half-way for recovery to find a lease later. Bootstrap calls it on
        the way out, after the server stopped taking calls and before the pools close."""
        if self._running:
            log.info("waiting for %d checkout saga(s) to finish before stopping", len(self._running))
            await asyncio.wait(set(self._running), timeout=timeout_seconds)

    async def _locked(
        self, request: _Request, session_id: str, expected: Money, token: str | None, unchanged_since: datetime | None
    ) -> ConfirmResult:
        # The Redis lock (``token``, taken by the caller) spares the database a double click's write. Not taken —
        # another request holds it, a process that died does, or Redis can't say — Postgres answers: a finished
        # request from its record, one under way with CHECKOUT_IN_PROGRESS, and an OPEN session goes on to the
        # durable guard, which starts no second saga whatever Redis holds.
        if token is None and (answer := await self._not_started(request, session_id, may_start=True)) is not None:
            return answer
        outcome: ConfirmResult | DomainError | None = None  # the answer cached in Redis as the lock is released
        try:
            since = self._leases.now()
            async with self._uow.single() as tx:
                begun = await tx.sessions.begin_confirm_with_cart(
                    session_id, request.key, request.fingerprint, unchanged_since=unchanged_since
                )
            if begun is None and unchanged_since is not None:
                # Not the session this replica kept (or not OPEN any more): checked, fingerprinted and guarded as
                # it is now, as a read first would have done.
                request, is_open = await self._as_now(request, session_id, expected)
                if is_open:
                    since = self._leases.now()
                    async with self._uow.single() as tx:
                        begun = await tx.sessions.begin_confirm_with_cart(session_id, request.key, request.fingerprint)
            if begun is None:
                return await self._not_started(request, session_id)
            self._recent.forget(session_id)  # the saga writes it from here on: a later call reads it
            started, cart_status = begun
            try:
                lease = self._leases.hold(started, since)
                result = await self._saga(started, cart_status, expected, request, lease)
            except LeaseLost:
                # Stalled past its lease, this saga was taken over (by recovery); the session says how it ends.
                log.warning("session %s: its saga was taken over by another owner; this one stopped", session_id)
                return await self._not_started(request, session_id)
            except DomainError as exc:
                # Like a payment API, only a request that started moving things is answered again: its saga
                # kept the answer with its last write. One refused by steps 2-3 (a changed price, a missing
                # field) reopened its session keeping nothing, and may be sent again.
                if request.kept:
                    outcome = exc
                raise
            except Exception:
                # A failure after the session's last write is not the answer: the one that write kept is.
                if (kept := await self._kept(request, session_id)) is None:
                    raise
                return kept
            outcome = result
            return result
        finally:
            await self._end(request, session_id, token, outcome)

    async def _as_now(self, request: _Request, session_id: str, expected: Money) -> tuple[_Request, bool]:
        """The request as a read of the session now makes it (its fingerprint), and whether the session is OPEN;
        refused, as :meth:`_as_read` refuses, when an OPEN session lacks a field an order needs."""
        async with self._uow.read() as tx:
            session = await tx.sessions.get(session_id)
        assert session is not None  # a session is never deleted, and this one was seen
        is_open = session.status is SessionStatus.OPEN
        if is_open:
            require_order_fields(session)
        return _Request.on(session, request.key, expected), is_open

    async def _end(
        self, request: _Request, session_id: str, token: str | None, outcome: ConfirmResult | DomainError | None
    ) -> None:
        """Release the lock (when taken) and put the answer Postgres keeps (when there is one) in Redis too, in one
        round trip. The answer is best effort (a repeat that misses it asks Postgres): one that can't be encoded is
        left out, and the lock is released all the same."""
        answer: bytes | None = None
        if outcome is not None:
            try:
                answer = Replays.encode(Replays.record(session_id, request.fingerprint, outcome))
            except Exception:
                log.warning("session %s: the answer for key %s could not be cached", session_id, request.key)
        try:
            await self._lock.end(request.lock_key, token, answer)
        except Exception:
            log.warning(
                "session %s: the lock on key %s was not released, or its answer cached", session_id, request.key
            )

    async def _kept(self, request: _Request, session_id: str) -> ConfirmResult | None:
        """The answer kept for this request (raised when it is a refusal); None when there is none, or it
        can't be read."""
        try:
            record = await self._replays.kept(request.customer_id, request.key)
        except Exception:
            return None
        return None if record is None else answer(record, session_id, request.fingerprint)

    @overload
    async def _not_started(self, request: _Request, session_id: str) -> ConfirmResult: ...

    @overload
    async def _not_started(self, request: _Request, session_id: str, *, may_start: bool) -> ConfirmResult | None: ...

    async def _not_started(
        self, request: _Request, session_id: str, *, may_start: bool = False
    ) -> ConfirmResult | None:
        """The durable guard refused (or this request has no lock): replay a finished request, or say why not;
        with ``may_start``, None when the session is OPEN and the guard may yet start it."""
        replay = await self._replays.durable(request.customer_id, request.key, session_id, request.fingerprint)
        if replay is not None:
            return replay
        async with self._uow.read() as tx:
            session = await tx.sessions.get(session_id)
        assert session is not None
        if session.status in _FINISHED and session.idempotency_key == request.key and session.result:
            return session.result
        if session.status is SessionStatus.CONFIRMING:
            raise Aborted("this checkout is already being confirmed", reason=Reason.CHECKOUT_IN_PROGRESS)
        if may_start and session.status is SessionStatus.OPEN:
            return None
        raise session_not_open(session, datetime.now(UTC))

    # --- the saga: one method per DESIGN.md §3 step ---------------------------------------

    async def _saga(
        self, session: Session, cart_status: CartStatus | None, expected: Money, request: _Request, lease: Lease
    ) -> ConfirmResult:
        # Steps 2-3 change nothing outside this service: on any failure the session is simply OPEN again.
        preview: Preview | None = None
        try:
            async with lease.step("validate"):
                self._validate(session, cart_status)
            async with lease.step("recalculate"):
                preview = await self._recalculate(session)
            _check_total(preview, expected)
        except LeaseLost:
            raise
        except Exception as exc:
            await self._reopen(session, lease, exc, preview)
            raise

        state = SagaState(promo_codes=preview.applied_codes, preview=preview)
        try:
            async with lease.step("reserve_promotion"):
                await self._reserve_promotion(session, state, preview, lease)
            async with lease.step("extend_reservations"):
                await self._extend_reservations(session, state)
            async with lease.step("authorize"):
                await self._authorize(session, state, preview, lease)
            async with lease.step("create_order"):
                await self._create_order(session, state, preview, lease)
        except LeaseLost:
            raise  # the new owner undoes or finishes what this attempt did
        except _PromotionChanged as changed:
            sid = session.session_id
            await lease.keep()
            await self._compensator.attempt_or_record(sid, Operation.RELEASE_PROMOTION, {"reservation_ref": sid})
            error: DomainError = Aborted(
                "a promotion changed while confirming; review the new total",
                reason=Reason.PRICE_CHANGED,
                metadata={"expected": str(expected.amount_minor), "actual": str(changed.actual),
                          "currency_code": session.currency_code},
            )  # fmt: skip
            await self._reopen(session, lease, error, None, answer=error)
            request.kept = True
            raise error from None
        except Exception as exc:
            if isinstance(exc, Unavailable) and state.order_draft is not None and not state.order_id:
                # CreateOrder's outcome is unknown: the order may exist, and voiding its payment now could
                # leave an order that can never be paid. Leave the session CONFIRMING at CREATE_ORDER; the
                # recovery worker resends it (idempotent on the session) and settles, or compensates on a
                # refusal. A retry with the same key meanwhile gets CHECKOUT_IN_PROGRESS, then the result.
                log.warning("CreateOrder outcome unknown for session %s; left for recovery", session.session_id)
                raise
            # Answered once everything is undone and the session cancelled: a refusal as it is, a transient
            # failure as ABORTED (start checkout again), since this request can no longer succeed.
            error = undone(exc)
            await self._settlement.fail(session, state, lease, f"checkout failed: {described(exc)}", answer=error)
            request.kept = True
            if error is exc:
                raise
            raise error from exc
        return await self._settlement.settle(session, state, lease)

    def _validate(self, session: Session, cart_status: CartStatus | None) -> None:
        """Step 2: the session has everything an order needs, and its cart is still held by it (its status as the
        guard's statement read it; a later move — a stale DLQ cart cleanup — is caught at the end, which moves
        the cart only from CHECKOUT: see :meth:`SessionRepo.begin_confirm_with_cart`)."""
        require_order_fields(session)
        if cart_status is not CartStatus.CHECKOUT:
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

    async def _recalculate(self, session: Session) -> Preview:
        """Step 3: fresh prices, shipping, tax and promotions, fanned out under one deadline."""
        return await self._engine.compute(pricing_input(session))

    async def _reserve_promotion(self, session: Session, state: SagaState, preview: Preview, lease: Lease) -> None:
        """Step 4: validate-and-reserve the coupons' usage in one call; the discount must not have moved."""
        if not state.promo_codes:
            return
        sid, cur = session.session_id, session.currency_code
        await lease.progress(SagaStep.RESERVE_PROMOTION, state)
        reserved = await self._call(
            lambda: self._g.promotion.reserve_usage(
                sid, state.promo_codes, promotion_lines(preview.lines, cur), Money(cur, preview.shipping_minor), cur,
                customer_id=session.customer_id, customer_email=session.email,
            )
        )  # fmt: skip
        state.promo_reserved = True
        item, shipping = split_discount(reserved, preview.subtotal_minor, preview.shipping_minor)
        if item + shipping != preview.discount_minor:
            raise _PromotionChanged(preview.grand_total_minor - (item + shipping - preview.discount_minor))

    async def _extend_reservations(self, session: Session, state: SagaState) -> None:
        """Step 5: hold the stock for the rest of the saga (all or nothing).

        The session expires with its reservations (StartCheckout took the warehouse's ``expires_at``); while
        they still have half of ``confirm_ttl_seconds`` left (a checkout confirmed within minutes of starting)
        they outlast any saga, and the call is skipped. A saga that outlived them anyway (a recovery long after)
        is what settlement already handles: units no longer held are never captured.

        No progress write of its own: a recovery from the step before releases the reservations anyway.
        """
        left = (session.expires_at - datetime.now(UTC)).total_seconds()
        if left >= self._policy.confirm_ttl_seconds / 2:
            return
        sid = session.session_id
        await self._call(lambda: self._g.inventory.extend_reservations(sid, self._policy.confirm_ttl_seconds))
        state.reservations_extended = True

    async def _authorize(self, session: Session, state: SagaState, preview: Preview, lease: Lease) -> None:
        """Step 6: hold the money, under a key derived from the session. A zero total needs no payment."""
        if preview.grand_total_minor == 0:
            return
        sid = session.session_id
        request = AuthorizeRequest(
            idempotency_key=authorize_key(sid),
            order_ref=sid,
            amount=preview.grand_total,
            payment_method=session.payment_method,
            customer_id=session.customer_id,
            customer_email=session.email,
        )
        state.authorize = request
        await lease.progress(SagaStep.AUTHORIZE_PAYMENT, state)
        try:
            payment = await self._call(lambda: self._g.payment.authorize(request))
        except Unavailable as exc:
            # The outcome is unknown; keep the id the error carries so the failure path voids exactly it.
            state.payment_id = exc.metadata.get("payment_id", "")
            state.payment_status = PaymentStatus.PENDING
            raise
        state.payment_id, state.payment_status = payment.payment_id, payment.status
        state.next_action_url = payment.next_action_url
        state.authorized_minor = payment.amount_minor
        if payment.status is PaymentStatus.DECLINED:
            raise FailedPrecondition(
                f"the payment was declined ({payment.failure_code or 'declined'})",
                reason=Reason.PAYMENT_DECLINED,
                metadata={"failure_code": payment.failure_code},
            )
        if payment.status not in _AUTHORIZED:
            raise Unavailable(f"the payment could not be authorized ({payment.status.value.lower()})")

    async def _create_order(self, session: Session, state: SagaState, preview: Preview, lease: Lease) -> None:
        """Step 7: the order, idempotent on the session; it checks the authorized amount against its total."""
        draft = _order_draft(session, preview, state.payment_id, state.authorized_minor)
        state.order_draft = draft
        await lease.progress(SagaStep.CREATE_ORDER, state)
        order = await self._call(lambda: self._g.order.create_order(draft))
        state.order_id, state.order_status = order.order_id, order.status

    # --- helpers --------------------------------------------------------------------------

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        return await retrying(self._policy.retry, call)

    async def _reopen(
        self,
        session: Session,
        lease: Lease,
        exc: BaseException,
        preview: Preview | None,
        *,
        answer: DomainError | None = None,
    ) -> None:
        """Back to OPEN; with ``answer``, the request's answer is kept in the same transaction."""
        async with self._uow.transaction() as tx:
            reopened = await tx.sessions.reopen(
                lease.session_id, f"{type(exc).__name__}: {exc}"[:1000], preview, attempt=lease.attempt
            )
            if not reopened:
                raise lease.lost()
            if answer is not None:
                await keep_answer(tx, session, error_record(answer))
        self._funnel.checkout_failed(exc.reason if isinstance(exc, DomainError) else Reason.INTERNAL)


class _Request:
    """One ConfirmCheckout request: whose key it is, and its fingerprint."""

    __slots__ = ("customer_id", "fingerprint", "kept", "key", "lock_key")

    def __init__(self, customer_id: str, key: str, print_: str) -> None:
        self.customer_id = customer_id
        self.key = key
        self.fingerprint = print_
        self.lock_key = f"{customer_id}:{key}"
        # Set once the saga's last write kept its failure as the key's answer (a success is always kept).
        self.kept = False

    @classmethod
    def on(cls, session: Session, key: str, expected: Money) -> _Request:
        """The request with ``key`` for ``expected`` on ``session`` as read (or kept): its owner's key, and the
        fingerprint of the session's payment method."""
        return cls(session.customer_id, key, fingerprint(session.session_id, expected, session.payment_method))


def _check_total(preview: Preview, expected: Money) -> None:
    """Step 3's condition: the customer must have seen this total."""
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


# What a compensation's reason may quote of the error: other services refuse control characters and long texts.
_REASON_QUOTE_CHARS = 160


def described(exc: BaseException) -> str:
    """The error as one short line, fit to travel as the reason of a compensation (VoidAuthorization, release).

    A driver's message spans lines and quotes its SQL; sent as it is, the void it explained was refused as invalid
    and parked dead (chaos seed 20260), leaving the authorization to the payment sweeper.
    """
    text = exc.message if isinstance(exc, DomainError) else str(exc) or type(exc).__name__
    line = " ".join(text.split())
    return line if len(line) <= _REASON_QUOTE_CHARS else line[: _REASON_QUOTE_CHARS - 1] + "…"


def _order_fields(session: Session) -> tuple[tuple[str, object], ...]:
    return (
        ("email", session.email),
        ("shipping_address", session.shipping_address),
        ("shipping_method", session.shipping_method),
        ("payment_method", session.payment_method),
    )


def _has_order_fields(session: Session) -> bool:
    return all(value for _, value in _order_fields(session))


def require_order_fields(session: Session) -> None:
    """What an order can't do without, named by its session field."""
    for field, value in _order_fields(session):
        if not value:
            raise InvalidArgument(field, "is required before confirming; set it with UpdateCheckoutState")


def _order_draft(session: Session, preview: Preview, payment_id: str, authorized_minor: int) -> OrderDraft:
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
        authorized_minor=authorized_minor,
        delivery=preview.delivery,
    )
