"""A payment event whose order row is changed and committed while the event's statement waits for its lock.

The statement locks the order first (its ``cur`` CTE, ``FOR UPDATE``) and decides there whether the event records its
payment status and whether it moves the order. Postgres then evaluates that decision again on the row's committed
new version (read committed), so the event acts on the order as it is, never as it was: a capture never confirms an
order cancelled meanwhile (invariant 3), is not recorded twice, and never touches an order that took another payment.

Deterministic: the other change holds the row lock in an open transaction until the event's statement is seen
waiting for it in ``pg_stat_activity``, then commits.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from helpers import unique
from order_support import USD, new_order
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.config import Settings
from infra.db import create_engine
from kernel.money import Money
from order.biz.apply_payment_event import ApplyPaymentEvent, EventDisposition, PaymentEvent, PaymentEventType
from order.biz.create_order import CreateOrder
from order.data.repositories import SqlUnitOfWork
from order.data.tables import history, orders, outbox
from order.model.order import Order, OrderStatus, PaymentStatus

pytestmark = pytest.mark.integration

APP = "kassa-order-event-locks"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def repo(settings: Settings) -> AsyncIterator[tuple[SqlUnitOfWork, AsyncEngine]]:
    engine = create_engine(str(settings.database_url), pool_size=2, application_name=APP)
    other = create_engine(str(settings.database_url), pool_size=2, application_name="kassa-order-event-locks-other")
    yield SqlUnitOfWork(engine, settings.pii_cipher()), other
    await engine.dispose()
    await other.dispose()


def captured(order_id: str, payment_id: str) -> PaymentEvent:
    return PaymentEvent(
        str(uuid.uuid4()), PaymentEventType.CAPTURED, payment_id, order_id, "", PaymentStatus.CAPTURED, Money(USD, 1200)
    )


async def _waiting_for_a_lock(engine: AsyncEngine, holder: int) -> bool:
    """Whether a session of the event's engine waits for a lock the backend ``holder`` holds."""
    async with engine.connect() as conn:
        count = await conn.scalar(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = :app"
                " AND CAST(:holder AS integer) = ANY(pg_blocking_pids(pid))"
            ),
            {"app": APP, "holder": holder},
        )
    return bool(count)


async def _apply_while_changed(
    uow: SqlUnitOfWork, other: AsyncEngine, event: PaymentEvent, change: dict[str, Any]
) -> EventDisposition:
    """Apply ``event`` while another transaction holds its order's row with ``change`` made, committed only once the
    event's statement waits for the row."""
    apply = ApplyPaymentEvent(uow)
    async with other.connect() as conn:
        holder = int(await conn.scalar(sa.text("SELECT pg_backend_pid()")))
        await conn.execute(orders.update().where(orders.c.order_id == uuid.UUID(event.order_id)).values(change))
        task = asyncio.ensure_future(apply(event))
        for _ in range(1000):  # a bounded wait for the statement to reach the lock (it takes milliseconds)
            if task.done() or await _waiting_for_a_lock(other, holder):
                break
            await asyncio.sleep(0.01)
        assert not task.done(), "the event's statement did not wait for the row the other transaction holds"
        assert await _waiting_for_a_lock(other, holder)
        await conn.commit()
    return await task


async def _placed_with_its_capture(uow: SqlUnitOfWork, customer_id: str) -> tuple[Order, PaymentEvent]:
    """A card order waiting for its payment, and the capture event of that payment."""
    payment_id = unique("pay")
    order, _ = await CreateOrder(uow)(new_order(customer_id, payment_id))
    return order, captured(order.order_id, payment_id)


async def _order_now(uow: SqlUnitOfWork, order_id: str) -> Order:
    async with uow.read() as tx:
        got = await tx.orders.get(order_id)
    assert got is not None
    return got


async def _effects(engine: AsyncEngine, order_id: str) -> tuple[list[str], list[str]]:
    async with engine.connect() as conn:
        events = (await conn.execute(sa.select(outbox.c.event_type).where(outbox.c.aggregate_id == order_id))).all()
        entries = (
            await conn.execute(
                sa.select(history.c.cause).where(history.c.order_id == uuid.UUID(order_id)).order_by(history.c.id)
            )
        ).all()
    return sorted(r.event_type for r in events), [r.cause for r in entries]


async def test_a_capture_waiting_for_an_order_cancelled_meanwhile_records_and_never_uncancels(
    repo: tuple[SqlUnitOfWork, AsyncEngine], customer_id: str
) -> None:
    uow, other = repo
    order, event = await _placed_with_its_capture(uow, customer_id)

    disposition = await _apply_while_changed(uow, other, event, {"status": OrderStatus.CANCELLED.value})

    assert disposition == EventDisposition.RECORDED
    got = await _order_now(uow, order.order_id)
    assert (got.status, got.payment_status) == (OrderStatus.CANCELLED, PaymentStatus.CAPTURED)
    events, causes = await _effects(other, order.order_id)
    assert events == ["OrderCreated"]  # no OrderConfirmed
    assert causes == ["order placed at checkout", "payment captured 12.00 USD"]


async def test_a_capture_waiting_for_an_order_whose_capture_was_recorded_meanwhile_is_stale(
    repo: tuple[SqlUnitOfWork, AsyncEngine], customer_id: str
) -> None:
    uow, other = repo
    order, event = await _placed_with_its_capture(uow, customer_id)
    change = {
        "status": OrderStatus.CONFIRMED.value,
        "payment_outcome": "CAPTURED",
        "payment_status": PaymentStatus.CAPTURED.value,
    }

    assert await _apply_while_changed(uow, other, event, change) == EventDisposition.STALE
    events, causes = await _effects(other, order.order_id)
    assert events == ["OrderCreated"] and causes == ["order placed at checkout"]


async def test_a_capture_waiting_for_an_order_that_took_another_payment_meanwhile_changes_nothing(
    repo: tuple[SqlUnitOfWork, AsyncEngine], customer_id: str
) -> None:
    uow, other = repo
    order, _ = await CreateOrder(uow)(new_order(customer_id, ""))
    event = captured(order.order_id, unique("pay"))

    disposition = await _apply_while_changed(uow, other, event, {"payment_id": "another-payment"})

    assert disposition == EventDisposition.CONFLICT
    got = await _order_now(uow, order.order_id)
    assert (got.status, got.payment_id, got.payment_status) == (
        OrderStatus.PENDING_PAYMENT,
        "another-payment",
        PaymentStatus.UNSPECIFIED,
    )
    events, causes = await _effects(other, order.order_id)
    assert events == ["OrderCreated"] and causes == ["order placed at checkout"]
