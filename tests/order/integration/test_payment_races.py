"""A payment event racing checkout's RecordPayment or a cancellation: one status change, one event.

The payment-event statement locks the order row before deciding, so whichever commits second sees
the first's result. Run against real Postgres with the two calls in flight together.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
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
from kernel.caller import Caller
from kernel.money import Money
from order.biz.apply_payment_event import ApplyPaymentEvent, EventDisposition, PaymentEvent, PaymentEventType
from order.biz.cancel_order import CancelOrder
from order.biz.create_order import CreateOrder
from order.biz.record_payment import RecordPayment
from order.data.repositories import SqlUnitOfWork
from order.data.tables import history, outbox
from order.model.order import Order, OrderStatus, PaymentOutcome, PaymentStatus

pytestmark = pytest.mark.integration


async def _get(uow: SqlUnitOfWork, order_id: str) -> Order | None:
    async with uow.read() as tx:
        return await tx.orders.get(order_id)


ROUNDS = 12


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def repo(settings: Settings) -> AsyncIterator[tuple[SqlUnitOfWork, AsyncEngine]]:
    engine = create_engine(str(settings.database_url), pool_size=8, application_name="kassa-order-races")
    yield SqlUnitOfWork(engine, settings.pii_cipher()), engine
    await engine.dispose()


def captured(order_id: str, payment_id: str) -> PaymentEvent:
    return PaymentEvent(
        str(uuid.uuid4()), PaymentEventType.CAPTURED, payment_id, order_id, "", PaymentStatus.CAPTURED, Money(USD, 1200)
    )


async def effects(engine: AsyncEngine, order_id: str) -> tuple[Counter[str], list[tuple[str, str]]]:
    async with engine.connect() as conn:
        events = (await conn.execute(sa.select(outbox.c.event_type).where(outbox.c.aggregate_id == order_id))).all()
        entries = (
            await conn.execute(
                sa.select(history.c.status, history.c.cause)
                .where(history.c.order_id == uuid.UUID(order_id))
                .order_by(history.c.id)
            )
        ).all()
    return Counter(r.event_type for r in events), [(r.status, r.cause) for r in entries]


async def test_a_capture_event_racing_record_payment_confirms_once(
    repo: tuple[SqlUnitOfWork, AsyncEngine], customer_id: str
) -> None:
    orders, engine = repo
    create, record, apply = CreateOrder(orders), RecordPayment(orders), ApplyPaymentEvent(orders)
    for _ in range(ROUNDS):
        payment_id = unique("pay")
        order, _ = await create(new_order(customer_id, payment_id))
        recorded, disposition = await asyncio.gather(
            record(order.order_id, PaymentOutcome.CAPTURED, payment_id=payment_id, cause="captured by checkout"),
            apply(captured(order.order_id, payment_id)),
        )
        assert recorded.status == OrderStatus.CONFIRMED
        assert disposition in {EventDisposition.APPLIED, EventDisposition.RECORDED}
        final = await _get(orders, order.order_id)
        assert final is not None
        assert (final.status, final.payment_status) == (OrderStatus.CONFIRMED, PaymentStatus.CAPTURED)
        events, entries = await effects(engine, order.order_id)
        assert events == Counter({"OrderCreated": 1, "OrderConfirmed": 1})
        assert [cause for _, cause in entries].count("payment captured 12.00 USD") == 1
        # The event moved the order (one entry) or came second and only recorded the capture (two).
        expected = 2 if disposition == EventDisposition.APPLIED else 3
        assert len(entries) == expected and {s for s, _ in entries[1:]} == {"CONFIRMED"}


async def test_a_capture_event_racing_a_cancellation_never_uncancels(
    repo: tuple[SqlUnitOfWork, AsyncEngine], customer_id: str
) -> None:
    orders, engine = repo
    create, cancel, apply = CreateOrder(orders), CancelOrder(orders), ApplyPaymentEvent(orders)
    caller = Caller(subject=customer_id, privileged=False)
    for _ in range(ROUNDS):
        payment_id = unique("pay")
        order, _ = await create(new_order(customer_id, payment_id))
        cancelled, disposition = await asyncio.gather(
            cancel(order.order_id, caller, "changed my mind"), apply(captured(order.order_id, payment_id))
        )
        assert cancelled.status == OrderStatus.CANCELLED
        final = await _get(orders, order.order_id)
        assert final is not None
        assert (final.status, final.payment_status) == (OrderStatus.CANCELLED, PaymentStatus.CAPTURED)
        events, entries = await effects(engine, order.order_id)
        assert events["OrderCancelled"] == 1
        statuses: list[Any] = [s for s, _ in entries]
        if disposition == EventDisposition.APPLIED:  # confirmed first, then cancelled
            assert events["OrderConfirmed"] == 1
            assert statuses == ["PENDING_PAYMENT", "CONFIRMED", "CANCELLED"]
        else:  # cancelled first: the capture is only recorded
            assert disposition == EventDisposition.RECORDED
            assert events["OrderConfirmed"] == 0
            assert statuses == ["PENDING_PAYMENT", "CANCELLED", "CANCELLED"]
