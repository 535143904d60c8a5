"""Workers' single passes: DLQ drain with backoff, saga recovery, session expiry."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from checkout.biz.checkout import dlq
from checkout.biz.checkout.confirm import _order_draft
from checkout.biz.checkout.dlq import backoff_seconds
from checkout.model.cart import CartStatus
from checkout.model.catalog import AuthorizeRequest, OrderDraft, OrderStatus, PaymentStatus
from checkout.model.compensation import BACKOFF_SCHEDULE_SECONDS, NewCompensation, Operation
from checkout.model.session import SagaStep, SessionStatus
from kernel.errors import Unavailable

pytestmark = pytest.mark.unit


def _make_due(world) -> None:
    for c in world.uow.compensations():
        world.uow.state.compensations[c.id] = replace(c, next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))


def test_backoff_follows_the_schedule_with_jitter_then_gives_up() -> None:
    assert BACKOFF_SCHEDULE_SECONDS == (60, 300, 1800, 7200)
    for attempts, base in enumerate(BACKOFF_SCHEDULE_SECONDS):
        delay = backoff_seconds(attempts)
        assert delay is not None
        assert 0.8 * base <= delay <= 1.2 * base
    assert backoff_seconds(len(BACKOFF_SCHEDULE_SECONDS)) is None


async def test_the_drain_reschedules_with_backoff_and_parks_dead_after_the_last_retry(world) -> None:
    async with world.uow.transaction() as tx:
        await tx.compensations.add(
            NewCompensation("s-1", Operation.RELEASE_RESERVATIONS, {"reservation_ref": "s-1"}, "down")
        )
    assert await world.drain.run_once() == 0  # not due yet (≈1 min)
    world.inventory.fail["release_reservations"] = Unavailable("still down")
    for expected_attempts, base in ((1, 300), (2, 1800), (3, 7200)):
        _make_due(world)
        await world.drain.run_once()
        (item,) = world.uow.compensations()
        assert item.attempts == expected_attempts
        delay = (item.next_attempt_at - datetime.now(UTC)).total_seconds()
        assert 0.75 * base <= delay <= 1.2 * base
    _make_due(world)
    await world.drain.run_once()
    assert world.uow.compensations() == []
    (dead,) = world.uow.compensations("dead")
    assert dead.attempts == 4
    assert "still down" in dead.last_error


async def test_every_operation_has_a_handler(world) -> None:
    session = await world.ready_session()
    sid = session.session_id
    payment = await world.payment.authorize(
        AuthorizeRequest("k", sid, session.preview.grand_total, "tok_visa", "c", "e@x.io")
    )
    order = await world.order.create_order(
        OrderDraft(
            sid, "c", "e@x.io", "USD", [], [], 0, 0, 0, 0, 0, session.shipping_address, None, "standard",
            payment.payment_id, "tok_visa", "",
        )
    )  # fmt: skip
    payloads = {
        Operation.CONFIRM_RESERVATIONS: {"reservation_ref": sid},
        Operation.CONFIRM_PROMOTION: {"reservation_ref": sid},
        Operation.CAPTURE_PAYMENT: {"payment_id": payment.payment_id, "order_id": order.order_id},
        Operation.RECORD_PAYMENT: {
            "order_id": order.order_id, "payment_id": payment.payment_id, "outcome": "CAPTURED", "cause": "t",
        },
        Operation.RELEASE_PROMOTION: {"reservation_ref": sid},
        Operation.RELEASE_RESERVATIONS: {"reservation_ref": sid},
        Operation.VOID_AUTHORIZATION: {"payment_id": payment.payment_id},
        Operation.CART_CLEANUP: {"cart_id": session.cart_id, "status": "CONVERTED", "order_id": order.order_id},
        Operation.REFUND_PAYMENT: {"payment_id": payment.payment_id, "idempotency_key": "late-1", "reason": "t"},
    }  # fmt: skip
    assert set(payloads) == set(Operation)
    async with world.uow.transaction() as tx:
        for op, payload in payloads.items():
            await tx.compensations.add(NewCompensation(sid, op, payload, "queued by test"))
    _make_due(world)
    assert await world.drain.run_once() == len(Operation)
    assert world.payment.statuses() == [PaymentStatus.REFUNDED]  # captured, then refunded last
    assert world.order.orders[sid]["status"] is OrderStatus.CONFIRMED
    assert world.inventory.held[sid].status == "CONFIRMED"
    assert world.uow.state.carts[session.cart_id].status is CartStatus.CONVERTED
    assert "CartConverted" in world.uow.event_types()


async def test_void_with_an_unknown_authorize_outcome_finds_and_voids_the_hold(world) -> None:
    session = await world.ready_session()
    request = AuthorizeRequest(
        "checkout:x:authorize", session.session_id, session.preview.grand_total, "tok_visa", "c", "e@x.io"
    )
    await world.payment.authorize(request)  # the provider held money, but the answer was lost
    await world.compensator.run(
        Operation.VOID_AUTHORIZATION, {"authorize_key": request.idempotency_key, "reason": "lost"}
    )
    assert world.payment.statuses() == [PaymentStatus.VOIDED]
    # found by its key, not by authorizing again (which could hold money a second time)
    assert world.payment.count("authorize") == 1 and world.payment.count("void_by_key") == 1


def _stick(world, session, step: SagaStep, minutes: int = 5) -> None:
    stored = world.uow.state.sessions[session.session_id]
    stored.status = SessionStatus.CONFIRMING
    stored.saga_step = step
    stored.confirm_started_at = datetime.now(UTC) - timedelta(minutes=minutes)


async def test_recovery_resumes_forward_once_the_order_may_exist(world) -> None:
    # The state a replica leaves when it dies right after persisting the CREATE_ORDER step.
    session = await world.ready_session((("SKU-9", 1),))
    authorize = await world.payment.authorize(
        AuthorizeRequest(
            f"checkout:{session.session_id}:authorize", session.session_id,
            session.preview.grand_total, "tok_visa", world.customer.subject, "ada@example.com",
        )
    )  # fmt: skip
    draft = _order_draft(session, session.preview, authorize.payment_id, authorize.amount_minor)
    _stick(world, session, SagaStep.CREATE_ORDER)
    state = world.uow.state.sessions[session.session_id].saga_state
    state.payment_id, state.payment_status = authorize.payment_id, PaymentStatus.AUTHORIZED
    state.order_draft = draft

    assert await world.recovery.run_once() == 1
    recovered = world.uow.state.sessions[session.session_id]
    assert recovered.status is SessionStatus.COMPLETED
    assert recovered.result.order_status == OrderStatus.CONFIRMED
    assert world.order.orders[session.session_id]["status"] is OrderStatus.CONFIRMED
    assert world.inventory.held[session.session_id].status == "CONFIRMED"
    assert world.uow.state.carts[session.cart_id].status is CartStatus.CONVERTED


async def test_recovery_compensates_before_the_order_step(world) -> None:
    session = await world.ready_session()
    request = AuthorizeRequest(
        f"checkout:{session.session_id}:authorize", session.session_id, session.preview.grand_total,
        "tok_visa", world.customer.subject, "ada@example.com",
    )  # fmt: skip
    await world.payment.authorize(request)  # authorized, then the replica died before recording it
    _stick(world, session, SagaStep.AUTHORIZE_PAYMENT)
    world.uow.state.sessions[session.session_id].saga_state.authorize = request

    assert await world.recovery.run_once() == 1
    assert world.uow.state.sessions[session.session_id].status is SessionStatus.CANCELLED
    assert world.payment.statuses() == [PaymentStatus.VOIDED]
    assert world.inventory.held[session.session_id].status == "RELEASED"
    assert world.uow.state.carts[session.cart_id].status is CartStatus.ACTIVE
    assert world.order.orders == {}


async def test_recovery_leaves_recent_sagas_alone(world) -> None:
    session = await world.ready_session()
    _stick(world, session, SagaStep.AUTHORIZE_PAYMENT, minutes=0)
    assert await world.recovery.run_once() == 0
    assert world.uow.state.sessions[session.session_id].status is SessionStatus.CONFIRMING


async def test_expiry_releases_stock_and_frees_the_cart(world) -> None:
    session = await world.ready_session()
    other = await world.ready_session((("SKU-2", 1),))
    world.uow.state.sessions[session.session_id].expires_at = datetime.now(UTC) - timedelta(seconds=1)
    assert await world.expiry.run_once() == 1
    assert world.uow.state.sessions[session.session_id].status is SessionStatus.EXPIRED
    assert world.inventory.held[session.session_id].status == "RELEASED"
    assert world.uow.state.carts[session.cart_id].status is CartStatus.ACTIVE
    assert world.uow.state.sessions[other.session_id].status is SessionStatus.OPEN


async def test_the_drain_starts_no_row_past_half_its_lease(world, monkeypatch) -> None:
    """A batch must not outlive its claim: the rows it can't start in time lapse and come back."""
    monkeypatch.setattr(dlq, "LEASE_SECONDS", 0.1)
    release = world.inventory.release_reservations

    async def slow_release(reservation_ref: str, reason: str) -> None:
        await asyncio.sleep(0.06)
        await release(reservation_ref, reason)

    world.inventory.release_reservations = slow_release
    async with world.uow.transaction() as tx:
        for ref in ("s-1", "s-2", "s-3"):
            await tx.compensations.add(
                NewCompensation(ref, Operation.RELEASE_RESERVATIONS, {"reservation_ref": ref}, "down")
            )
    _make_due(world)
    assert await world.drain.run_once() == 1
    assert len(world.uow.compensations()) == 2  # still pending, leased until their lease lapses
    await asyncio.sleep(0.1)
    assert await world.drain.run_once() == 1
