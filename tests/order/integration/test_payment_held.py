"""No goods without money: an order whose payment hold is gone is never confirmed, packed or shipped.

With KASSA_CAPTURE_ON=shipment the order is CONFIRMED on an authorization that payment captures when
the order ships. Once the order has learned (PaymentVoided) that the hold is gone, fulfilment refuses
the step (FAILED_PRECONDITION / PAYMENT_INVALID_STATE) and an authorization report fails the order
instead of confirming it. A void racing a shipment is serialized on the order row. Real Postgres.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import sqlalchemy as sa
from helpers import unique
from order_support import new_order
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.config import Settings
from infra.db import create_engine
from kernel.errors import FailedPrecondition, Reason
from order.biz.apply_payment_event import ApplyPaymentEvent, EventDisposition, PaymentEvent, PaymentEventType
from order.biz.create_order import CreateOrder
from order.biz.record_payment import RecordPayment
from order.biz.update_fulfillment import UpdateFulfillment
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
    engine = create_engine(str(settings.database_url), pool_size=8, application_name="kassa-order-held")
    yield SqlUnitOfWork(engine, settings.pii_cipher()), engine
    await engine.dispose()


def voided(order_id: str, payment_id: str) -> PaymentEvent:
    return PaymentEvent(
        str(uuid.uuid4()), PaymentEventType.VOIDED, payment_id, order_id, "", PaymentStatus.VOIDED, detail="expired"
    )


async def events_of(engine: AsyncEngine, order_id: str) -> Counter[str]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(outbox.c.event_type).where(outbox.c.aggregate_id == order_id))).all()
    return Counter(r.event_type for r in rows)


async def statuses_of(engine: AsyncEngine, order_id: str) -> list[str]:
    async with engine.connect() as conn:
        stmt = sa.select(history.c.status).where(history.c.order_id == uuid.UUID(order_id)).order_by(history.c.id)
        return [r.status for r in (await conn.execute(stmt)).all()]


async def authorized_order(orders: SqlUnitOfWork, customer_id: str) -> tuple[Order, str]:
    """An order confirmed on an authorization (capture on shipment)."""
    payment_id = unique("pay")
    order, _ = await CreateOrder(orders)(new_order(customer_id, payment_id))
    confirmed = await RecordPayment(orders)(order.order_id, PaymentOutcome.AUTHORIZED, payment_id=payment_id)
    assert (confirmed.status, confirmed.payment_status) == (OrderStatus.CONFIRMED, PaymentStatus.AUTHORIZED)
    return confirmed, payment_id


async def test_an_order_whose_authorization_was_voided_is_neither_packed_nor_shipped(
    repo: tuple[SqlUnitOfWork, AsyncEngine], customer_id: str
) -> None:
    orders, engine = repo
    fulfil, apply = UpdateFulfillment(orders), ApplyPaymentEvent(orders)

    order, payment_id = await authorized_order(orders, customer_id)
    assert await apply(voided(order.order_id, payment_id)) == EventDisposition.RECORDED
    with pytest.raises(FailedPrecondition) as refused:
        await fulfil(order.order_id, OrderStatus.PACKED, "")
    assert refused.value.reason == Reason.PAYMENT_INVALID_STATE
    assert refused.value.metadata["payment_status"] == "VOIDED"

    packed, payment_id = await authorized_order(orders, customer_id)
    assert (await fulfil(packed.order_id, OrderStatus.PACKED, "")).status == OrderStatus.PACKED
    await apply(voided(packed.order_id, payment_id))
    with pytest.raises(FailedPrecondition) as refused:
        await fulfil(packed.order_id, OrderStatus.SHIPPED, "1Z999", "ups")
    assert refused.value.reason == Reason.PAYMENT_INVALID_STATE
    final = await _get(orders, packed.order_id)
    assert final is not None and (final.status, final.payment_status) == (OrderStatus.PACKED, PaymentStatus.VOIDED)
    assert (await events_of(engine, packed.order_id))["OrderShipped"] == 0


async def test_a_voided_authorization_fails_the_order_instead_of_confirming_it(
    repo: tuple[SqlUnitOfWork, AsyncEngine], customer_id: str
) -> None:
    orders, engine = repo
    record, apply = RecordPayment(orders), ApplyPaymentEvent(orders)
    payment_id = unique("pay")
    order, _ = await CreateOrder(orders)(new_order(customer_id, payment_id))
    await apply(voided(order.order_id, payment_id))

    answer = await record(order.order_id, PaymentOutcome.AUTHORIZED, payment_id=payment_id)
    assert (answer.status, answer.payment_status) == (OrderStatus.PAYMENT_FAILED, PaymentStatus.VOIDED)
    # A retry of the report (checkout's DLQ) gets the same answer and changes nothing more.
    again = await record(order.order_id, PaymentOutcome.AUTHORIZED, payment_id=payment_id)
    assert again.status == OrderStatus.PAYMENT_FAILED
    events = await events_of(engine, order.order_id)
    assert events["OrderConfirmed"] == 0 and events["OrderPaymentFailed"] == 1


async def test_a_void_racing_a_shipment_never_ships_an_order_known_to_be_voided(
    repo: tuple[SqlUnitOfWork, AsyncEngine], customer_id: str
) -> None:
    orders, engine = repo
    fulfil, apply = UpdateFulfillment(orders), ApplyPaymentEvent(orders)
    outcomes: Counter[str] = Counter()
    for _ in range(ROUNDS):
        order, payment_id = await authorized_order(orders, customer_id)
        await fulfil(order.order_id, OrderStatus.PACKED, "")
        shipped, _ = await asyncio.gather(
            fulfil(order.order_id, OrderStatus.SHIPPED, "1Z999", "ups"),
            apply(voided(order.order_id, payment_id)),
            return_exceptions=True,
        )
        statuses = await statuses_of(engine, order.order_id)
        events = await events_of(engine, order.order_id)
        if isinstance(shipped, FailedPrecondition):
            # The void came first: the order stays packed with its payment voided, nothing shipped.
            assert shipped.reason == Reason.PAYMENT_INVALID_STATE
            assert events["OrderShipped"] == 0 and statuses[-1] == "PACKED"
            outcomes["refused"] += 1
        else:
            # The shipment came first: its entry precedes the void's, and payment's capture decides.
            assert isinstance(shipped, Order) and shipped.status == OrderStatus.SHIPPED
            assert events["OrderShipped"] == 1 and statuses[-2:] == ["SHIPPED", "SHIPPED"]
            outcomes["shipped"] += 1
    assert sum(outcomes.values()) == ROUNDS
