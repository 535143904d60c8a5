"""Payment's one-statement writes with their event (``SqlUnitOfWork.statement()``, from
:class:`infra.outbox_cte.StatementUnitOfWork`): a transition's event commits with it and wakes the publisher; an
event of a statement of its own (``add_event``) is refused there before it is written, as it would not commit with
its change; a block that raises after its statement committed still wakes the publisher and counts the outcome."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from helpers import unique
from sqlalchemy.ext.asyncio import AsyncEngine

from kernel.money import Money
from payment.biz.common import apply
from payment.data.repositories import SqlTx, SqlUnitOfWork
from payment.data.tables import outbox
from payment.model.payment import NewPayment, PaymentStatus, Transition, event_data

pytestmark = pytest.mark.integration


def _new() -> NewPayment:
    return NewPayment(uuid.uuid4(), unique("pay"), unique("sess"), "cust-1", Money("USD", 700), "cod", "cod", "")


async def _payloads(engine: AsyncEngine, payment_id: uuid.UUID) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(outbox.c.payload).where(outbox.c.aggregate_id == str(payment_id)))
        return [r.payload for r in rows]


async def test_a_transition_in_statement_writes_its_event_and_wakes_the_publisher(payment_db: AsyncEngine) -> None:
    woken: list[None] = []
    uow = SqlUnitOfWork(payment_db, on_commit=lambda: woken.append(None))
    new = _new()
    async with uow.single() as tx:
        await tx.payments.create_or_get(new)
    assert not woken
    t = Transition(PaymentStatus.CASH_ON_DELIVERY, frozenset({PaymentStatus.PENDING}), event_type="PaymentAuthorized")
    done = await apply(uow, new.payment_id, t)
    assert done is not None and done.status == PaymentStatus.CASH_ON_DELIVERY
    assert len(woken) == 1
    [payload] = await _payloads(payment_db, new.payment_id)
    # The envelope add_event writes, the data computed from the updated row.
    assert set(payload) - {"traceparent"} == {"event_id", "event_type", "aggregate_id", "occurred_at", "data"}
    assert payload["data"] == event_data(done)
    # Refused by its guard: no event, no wake.
    assert await apply(uow, new.payment_id, t) is None
    assert len(woken) == 1 and len(await _payloads(payment_db, new.payment_id)) == 1


async def test_statement_refuses_an_event_of_a_statement_of_its_own(payment_db: AsyncEngine) -> None:
    woken: list[None] = []
    uow = SqlUnitOfWork(payment_db, on_commit=lambda: woken.append(None))
    aggregate = str(uuid.uuid4())
    with pytest.raises(RuntimeError, match="must commit with its change"):
        async with uow.statement() as tx:
            await tx.add_event("PaymentTest", aggregate, {"x": 1})
    # Refused before it was written: on the autocommit connection a written row would have committed (and been
    # published) whatever the block did next. A RuntimeError, not an assert: it holds under ``python -O`` too.
    assert await _payloads(payment_db, uuid.UUID(aggregate)) == []
    assert not woken
    # In a transaction it is the usual add_event.
    async with uow.transaction() as tx:
        await tx.add_event("PaymentTest", aggregate, {"x": 1})
    assert len(woken) == 1
    assert len(await _payloads(payment_db, uuid.UUID(aggregate))) == 1


async def test_a_block_that_raises_after_its_statement_committed_still_wakes_the_publisher(
    payment_db: AsyncEngine,
) -> None:
    woken: list[None] = []
    counted: list[PaymentStatus] = []

    class Counting(SqlUnitOfWork):
        def after_commit(self, tx: SqlTx) -> None:
            counted.extend(p.status for p, _ in tx.counted)
            super().after_commit(tx)

    uow = Counting(payment_db, on_commit=lambda: woken.append(None))
    new = _new()
    async with uow.single() as tx:
        await tx.payments.create_or_get(new)
    counted.clear()
    t = Transition(PaymentStatus.CASH_ON_DELIVERY, frozenset({PaymentStatus.PENDING}), event_type="PaymentAuthorized")
    with pytest.raises(LookupError, match="after the statement"):
        async with uow.statement() as tx:
            assert await tx.payments.apply(new.payment_id, t) is not None
            raise LookupError("after the statement")
    # The transition and its event committed (autocommit): the publisher is woken and the outcome counted anyway.
    assert len(await _payloads(payment_db, new.payment_id)) == 1
    assert len(woken) == 1
    assert counted == [PaymentStatus.CASH_ON_DELIVERY]
