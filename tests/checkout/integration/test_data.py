"""The SQL repositories and the DLQ against real Postgres: guards, unique indexes, claims, backoff."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from helpers import unique

from checkout.data.tables import checkout_sessions, failed_compensations
from checkout.model.cart import Cart, CartItem, CartStatus
from checkout.model.catalog import Address
from checkout.model.compensation import FailedCompensation, NewCompensation, Operation
from checkout.model.session import (
    ConfirmError,
    ConfirmRecord,
    ConfirmResult,
    SagaState,
    SagaStep,
    Session,
    SessionLine,
    SessionStatus,
)
from kernel.caller import Caller
from kernel.errors import AlreadyExists, InvalidArgument, Reason, Unavailable
from tests.checkout.sessions import begin_confirm, create_session

pytestmark = pytest.mark.integration

ORIGIN = Address("WH", "1 Depot Rd", "", "Reno", "NV", "89501", "US", "")


async def _cart(uow, customer: str) -> Cart:
    async with uow.transaction() as tx:
        cart = await tx.carts.create(Cart(str(uuid.uuid4()), customer, "USD"))
        await tx.carts.upsert_item(cart.cart_id, CartItem("SKU-1", "One", 2, 500))
    return cart


def _session(cart: Cart, minutes: int = 15) -> Session:
    return Session(
        session_id=str(uuid.uuid4()),
        cart_id=cart.cart_id,
        customer_id=cart.customer_id,
        currency_code="USD",
        lines=[SessionLine("SKU-1", "One", 2, 500, "wh-1", ORIGIN)],
        expires_at=datetime.now(UTC) + timedelta(minutes=minutes),
    )


async def test_cart_items_check_and_conditional_transitions(served) -> None:
    uow = served.container.uow
    cart = await _cart(uow, unique("cust"))
    with pytest.raises(sa.exc.IntegrityError):
        async with uow.transaction() as tx:
            await tx.carts.upsert_item(cart.cart_id, CartItem("SKU-2", "Two", 0, 100))
    async with uow.transaction() as tx:
        assert await tx.carts.set_prices(cart.cart_id, {"SKU-1": 650}, version=cart.version + 99) is None
        version = await tx.carts.set_prices(cart.cart_id, {"SKU-1": 650}, version=cart.version)
        assert version == cart.version + 1
        assert not await tx.carts.transition(cart.cart_id, {CartStatus.ACTIVE}, CartStatus.CHECKOUT, version=1)
        assert await tx.carts.transition(cart.cart_id, {CartStatus.ACTIVE}, CartStatus.CHECKOUT, version=version)
        assert await tx.carts.lock_active(cart.cart_id) is None
        stored = await tx.carts.get(cart.cart_id)
    assert stored.status is CartStatus.CHECKOUT
    assert stored.items == [CartItem("SKU-1", "One", 2, 650)]


async def test_one_live_session_per_cart_and_the_durable_confirm_guard(served) -> None:
    uow = served.container.uow
    customer = unique("cust")
    cart = await _cart(uow, customer)
    first, second = _session(cart), _session(cart)
    async with uow.transaction() as tx:
        assert await create_session(tx, first)
        assert not await create_session(tx, second)
    async with uow.transaction() as tx:
        started = await begin_confirm(tx, first.session_id, "key-A", "fp-A")
    assert started is not None
    assert started.status is SessionStatus.CONFIRMING
    assert started.confirm_started_at is not None
    async with uow.transaction() as tx:
        assert await begin_confirm(tx, first.session_id, "key-A", "fp-A") is None

    other_cart = await _cart(uow, customer)
    other = _session(other_cart)
    async with uow.transaction() as tx:
        assert await create_session(tx, other)
    with pytest.raises(AlreadyExists) as err:
        async with uow.transaction() as tx:
            await begin_confirm(tx, other.session_id, "key-A", "fp-B")
    assert err.value.reason == Reason.IDEMPOTENCY_KEY_REUSED
    async with uow.transaction() as tx:
        assert (await tx.sessions.get(other.session_id)).status is SessionStatus.OPEN

    state = SagaState(payment_id="pay-1", promo_codes=["SAVE10"])
    attempt = started.saga_attempt
    async with uow.transaction() as tx:
        assert await tx.sessions.save_progress(first.session_id, SagaStep.AUTHORIZE_PAYMENT, state, attempt=attempt)
        assert await tx.sessions.finish(first.session_id, SessionStatus.CANCELLED, step=SagaStep.COMPENSATING,
                                        state=state, last_error="declined", attempt=attempt)  # fmt: skip
        assert not await tx.sessions.finish(
            first.session_id, SessionStatus.COMPLETED, step=SagaStep.DONE, state=state, attempt=attempt
        )
        finished = await tx.sessions.get(first.session_id)
    assert finished.status is SessionStatus.CANCELLED
    assert finished.saga_state.payment_id == "pay-1"
    assert finished.saga_step is SagaStep.COMPENSATING
    async with uow.transaction() as tx:  # the cart may have a live session again
        assert await create_session(tx, second)


async def test_the_guard_records_the_request_and_starts_nothing_under_a_key_already_answered(served) -> None:
    uow = served.container.uow
    customer = unique("cust")
    session = _session(await _cart(uow, customer))
    async with uow.transaction() as tx:
        await create_session(tx, session)
        started = await begin_confirm(tx, session.session_id, "key-A", "fp-A")
    assert started is not None and (started.idempotency_key, started.confirm_fingerprint) == ("key-A", "fp-A")
    # The saga's last write (here: reopened after a failure that is the key's answer) clears the request,
    # and the answer is kept in its transaction.
    async with uow.transaction() as tx:
        assert await tx.sessions.reopen(session.session_id, "promotion changed", None, attempt=started.saga_attempt)
        error = ConfirmError("Aborted", Reason.PRICE_CHANGED, "a promotion changed")
        await tx.confirm_records.put(customer, "key-A", ConfirmRecord(session.session_id, "fp-A", error=error))
    async with uow.transaction() as tx:
        reopened = await tx.sessions.get(session.session_id)
        assert reopened is not None and reopened.status is SessionStatus.OPEN
        assert reopened.confirm_fingerprint is None
        assert await begin_confirm(tx, session.session_id, "key-A", "fp-A") is None
        again = await begin_confirm(tx, session.session_id, "key-B", "fp-B")  # a new request may
    assert again is not None and (again.idempotency_key, again.confirm_fingerprint) == ("key-B", "fp-B")
    async with uow.transaction() as tx:
        assert await tx.sessions.finish(session.session_id, SessionStatus.CANCELLED, step=SagaStep.COMPENSATING,
                                        state=SagaState(), attempt=again.saga_attempt)  # fmt: skip
        finished = await tx.sessions.get(session.session_id)
    assert finished is not None and finished.confirm_fingerprint is None


async def test_expiry_and_stuck_claims_are_conditional(served) -> None:
    uow = served.container.uow
    cart = await _cart(uow, unique("cust"))
    expired = _session(cart, minutes=-1)
    async with uow.transaction() as tx:
        await create_session(tx, expired)
        await tx.carts.transition(cart.cart_id, {CartStatus.ACTIVE}, CartStatus.CHECKOUT)
        assert await begin_confirm(tx, expired.session_id, unique("k"), "fp") is None
    assert await served.container.expiry.expire_for_cart(cart.cart_id)
    async with uow.transaction() as tx:
        assert (await tx.sessions.get(expired.session_id)).status is SessionStatus.EXPIRED
        assert (await tx.carts.get(cart.cart_id)).status is CartStatus.ACTIVE
    assert served.inventory.calls[-1][0:2] == ("release_reservations", (expired.session_id, "checkout session expired"))

    cart2 = await _cart(uow, unique("cust"))
    stuck = _session(cart2)
    async with uow.transaction() as tx:
        await create_session(tx, stuck)
        await begin_confirm(tx, stuck.session_id, unique("k"), "fp")
        claimed = await tx.sessions.claim_stuck(120, 100)
    assert stuck.session_id not in {s.session_id for s in claimed}
    async with served.container.engine.begin() as conn:
        await conn.execute(
            checkout_sessions.update()
            .where(checkout_sessions.c.session_id == stuck.session_id)
            .values(confirm_started_at=sa.func.now() - sa.text("interval '10 minutes'"))
        )
    async with uow.transaction() as tx:
        claimed = await tx.sessions.claim_stuck(120, 100)
    assert stuck.session_id in {s.session_id for s in claimed}
    async with uow.transaction() as tx:  # the claim is a lease: nobody else takes it now
        assert stuck.session_id not in {s.session_id for s in await tx.sessions.claim_stuck(120, 100)}


async def test_every_claim_of_a_saga_fences_out_the_writes_of_the_one_before(served) -> None:
    uow = served.container.uow
    cart = await _cart(uow, unique("cust"))
    session = _session(cart)
    async with uow.transaction() as tx:
        await create_session(tx, session)
        live = await begin_confirm(tx, session.session_id, unique("k"), "fp")
    assert live is not None and live.saga_attempt == 1
    sid, state = session.session_id, SagaState(payment_id="pay-1")
    async with uow.transaction() as tx:
        assert await tx.sessions.save_progress(sid, SagaStep.AUTHORIZE_PAYMENT, state, attempt=1)
        assert await tx.sessions.renew(sid, attempt=1)
        assert not await tx.sessions.save_progress(sid, SagaStep.AUTHORIZE_PAYMENT, state, attempt=2)
    async with served.container.engine.begin() as conn:
        await conn.execute(
            checkout_sessions.update()
            .where(checkout_sessions.c.session_id == sid)
            .values(confirm_started_at=sa.func.now() - sa.text("interval '10 minutes'"))
        )
    async with uow.transaction() as tx:
        (taken,) = await tx.sessions.claim_stuck(120, 1, session_id=sid)
    assert taken.saga_attempt == 2 and taken.saga_state.payment_id == "pay-1"

    # The live saga wakes up: not one of its writes lands any more.
    async with uow.transaction() as tx:
        assert not await tx.sessions.save_progress(sid, SagaStep.CREATE_ORDER, state, attempt=1)
        assert not await tx.sessions.renew(sid, attempt=1)
        assert not await tx.sessions.reopen(sid, "stalled", None, attempt=1)
        assert not await tx.sessions.finish(sid, SessionStatus.COMPLETED, step=SagaStep.DONE, state=state, attempt=1)
        result = ConfirmResult(sid, "o-1", "PENDING_PAYMENT", "REQUIRES_ACTION", "https://3ds", "USD", 1000)
        assert not await tx.sessions.await_payment(
            sid, state=state, order_id="o-1", result=result, window_seconds=60, attempt=1
        )
        stored = await tx.sessions.get(sid)
    assert stored is not None and stored.status is SessionStatus.CONFIRMING
    assert stored.saga_step is SagaStep.AUTHORIZE_PAYMENT and stored.saga_attempt == 2
    async with uow.transaction() as tx:  # its successor's do
        assert await tx.sessions.finish(
            sid, SessionStatus.CANCELLED, step=SagaStep.COMPENSATING, state=state, attempt=2
        )


async def test_a_failing_compensation_lands_in_postgres_and_the_worker_drains_it(served, customer_id) -> None:
    container = served.container
    caller = Caller(customer_id)
    sku = unique("SKU")
    served.pricing.add(sku, 1000)
    served.inventory.stock[sku] = 1
    cart = await container.carts.create(caller, "USD")
    await container.carts.add_item(caller, cart.cart_id, sku, 1)
    session, _ = await container.start(caller, cart.cart_id)
    from checkout.biz.checkout.update_state import StateUpdate

    session = await container.state.update(
        caller,
        session.session_id,
        StateUpdate(email="a@b.co", shipping_address=ORIGIN, shipping_method="standard", payment_method="tok_visa"),
    )
    served.order.fail["create_order"] = InvalidArgument("totals", "do not add up")
    served.payment.fail["void"] = Unavailable("payment service down")
    try:
        with pytest.raises(InvalidArgument):
            await container.confirm(caller, session.session_id, unique("key"), session.preview.grand_total)
    finally:
        served.reset_failures()

    async with container.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(failed_compensations).where(failed_compensations.c.session_id == session.session_id)
            )
        ).all()
    assert [(r.operation, r.status, r.attempts) for r in rows] == [(Operation.VOID_AUTHORIZATION.value, "pending", 0)]
    (row,) = rows
    assert row.payload["payment_id"]
    assert row.next_attempt_at > datetime.now(UTC) + timedelta(seconds=30)  # first retry ≈1 min later
    assert served.inventory.held[session.session_id].status == "RELEASED"  # the other compensations ran

    async with container.engine.begin() as conn:
        await conn.execute(
            failed_compensations.update()
            .where(failed_compensations.c.id == row.id)
            .values(next_attempt_at=sa.func.now())
        )
    assert await container.drain.run_once() >= 1
    async with container.engine.connect() as conn:
        status = (
            await conn.execute(sa.select(failed_compensations.c.status).where(failed_compensations.c.id == row.id))
        ).scalar()
    assert status == "done"
    assert served.payment.payments[row.payload["payment_id"]]["status"].value == "VOIDED"
    async with container.uow.transaction() as tx:
        assert (await tx.sessions.get(session.session_id)).status is SessionStatus.CANCELLED
        assert (await tx.carts.get(cart.cart_id)).status is CartStatus.ACTIVE


async def test_a_dlq_worker_whose_lease_lapsed_cannot_overwrite_what_its_successor_did(served) -> None:
    """Two drains of one row (the first stalled past its lease): the one that holds the row decides."""
    uow, sid = served.container.uow, str(uuid.uuid4())
    async with uow.transaction() as tx:
        cid = await tx.compensations.add(
            NewCompensation(sid, Operation.RELEASE_RESERVATIONS, {"reservation_ref": sid}, "down")
        )

    async def due_now() -> None:
        async with served.container.engine.begin() as conn:
            await conn.execute(
                failed_compensations.update()
                .where(failed_compensations.c.id == cid)
                .values(next_attempt_at=sa.func.now())
            )

    async def claim() -> FailedCompensation:
        async with uow.transaction() as tx:
            (item,) = [c for c in await tx.compensations.claim_due(100, 300) if c.id == cid]
        return item

    await due_now()
    stalled = await claim()
    await due_now()  # its lease ran out
    successor = await claim()
    async with uow.transaction() as tx:
        assert await tx.compensations.mark_done(successor)
    async with uow.transaction() as tx:  # the stalled worker wakes up, its retry having failed
        assert not await tx.compensations.mark_dead(stalled, "timed out")
        assert not await tx.compensations.reschedule(stalled, 60, "timed out")
        assert not await tx.compensations.mark_done(stalled)
    async with served.container.engine.connect() as conn:
        row = (await conn.execute(sa.select(failed_compensations).where(failed_compensations.c.id == cid))).one()
    assert (row.status, row.attempts) == ("done", 0)
