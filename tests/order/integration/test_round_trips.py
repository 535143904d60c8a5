"""Round trips per use case (issues 4 and 11): each step of the checkout path is one autocommit statement
that writes the change, its history entry, inbox claim and outbox event together (``infra.outbox_cte``).

Counted with SQLAlchemy's engine events on an engine of the test's own, against the real schema;
the contents written are checked too, since the statements that write them are the point.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from helpers import RoundTrips, Trips, unique
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.config import Settings
from infra.db import create_engine
from kernel.errors import FailedPrecondition
from kernel.money import Money
from order.biz.apply_payment_event import ApplyPaymentEvent, EventDisposition, PaymentEvent, PaymentEventType
from order.biz.create_order import CreateOrder
from order.biz.ports import Transition
from order.biz.record_payment import RecordPayment
from order.data.repositories import SqlUnitOfWork
from order.data.tables import history, inbox, order_discounts, order_lines, outbox
from order.model.events import event_data
from order.model.order import (
    Address,
    NewOrder,
    Order,
    OrderDiscount,
    OrderLine,
    OrderStatus,
    PaymentOutcome,
    PaymentStatus,
    Totals,
)

pytestmark = pytest.mark.integration


async def _get(uow: SqlUnitOfWork, order_id: str) -> Order | None:
    async with uow.read() as tx:
        return await tx.orders.get(order_id)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def counted(settings: Settings) -> AsyncIterator[tuple[SqlUnitOfWork, RoundTrips, AsyncEngine]]:
    engine = create_engine(str(settings.database_url), pool_size=2, application_name="kassa-order-round-trips")
    trips = RoundTrips(engine)
    yield SqlUnitOfWork(engine, settings.pii_cipher()), trips, engine
    await engine.dispose()


def usd(amount: int) -> Money:
    return Money("USD", amount)


def captured(payment_id: str, order_id: str) -> PaymentEvent:
    return PaymentEvent(
        str(uuid.uuid4()),
        PaymentEventType.CAPTURED,
        payment_id,
        order_id,
        "",
        PaymentStatus.CAPTURED,
        usd(3400),
    )


def new_order(session_id: str, customer_id: str, payment_id: str) -> NewOrder:
    """Three lines (2 x 10.00, 1 x 5.00, 3 x 1.50), two coupons (1.00 + 0.50), 4.00 shipping, 2.00 tax: 34.00."""
    lines = (
        OrderLine("apple", "Apple", 2, usd(1000), usd(2000), "w1", "food"),
        OrderLine("pear", "Pear", 1, usd(500), usd(500), "w2", ""),
        OrderLine("plum", "Plüm", 3, usd(150), usd(450), "w1", "food"),
    )
    return NewOrder(
        checkout_session_id=session_id,
        customer_id=customer_id,
        email="ada@example.com",
        lines=lines,
        discounts=(OrderDiscount("SAVE1", usd(100)), OrderDiscount("HALF", usd(50))),
        totals=Totals(usd(2950), usd(150), usd(400), usd(200), usd(3400)),
        shipping_address=Address(name="Ada", line1="1 Main St", city="Springfield", postal_code="1", country_code="US"),
        billing_address=None,
        shipping_method="standard",
        payment_id=payment_id,
        payment_method="tok_visa",
        notes="",
        authorized_amount=usd(3400),
    )


async def rows(engine: AsyncEngine, stmt: sa.Select[Any]) -> list[sa.Row[Any]]:
    async with engine.connect() as conn:
        return list((await conn.execute(stmt)).all())


async def test_checkout_path_is_one_statement_per_step(
    counted: tuple[SqlUnitOfWork, RoundTrips, AsyncEngine], customer_id: str
) -> None:
    repo, trips, engine = counted
    create, record = CreateOrder(repo), RecordPayment(repo)
    apply = ApplyPaymentEvent(repo)
    session_id, payment_id = unique("sess"), unique("pay")
    new = new_order(session_id, customer_id, payment_id)
    trips.take()

    order, created = await create(new)
    # Order + lines + discounts + history + OrderCreated in one statement, no transaction (was 2 in one).
    [(sql, bound)] = trips.sent
    assert trips.take() == Trips(statements=1, autocommit=1)
    assert created
    # Short enough for psycopg to keep its parsed form (it keeps statements of up to 4,096 characters and 50
    # parameters; at 4,159 characters CreateOrder's was parsed again on every call).
    assert len(sql) <= 4096 and len(bound) <= 50, (len(sql), len(bound))
    # The personal columns are not returned by the statement (the order is built from the request): what it
    # answers must be what a fresh read of the stored order gives.
    async with repo.read() as tx:
        stored = await tx.orders.get(order.order_id)
    trips.take()
    assert stored is not None and stored == order
    assert (stored.email, stored.shipping_address, stored.lines) == (new.email, new.shipping_address, new.lines)
    oid = uuid.UUID(order.order_id)
    stored_lines = await rows(
        engine, sa.select(order_lines).where(order_lines.c.order_id == oid).order_by(order_lines.c.line_no)
    )
    assert [(r.line_no, r.sku, r.name, r.quantity, r.unit_price_minor, r.warehouse_id) for r in stored_lines] == [
        (0, "apple", "Apple", 2, 1000, "w1"),
        (1, "pear", "Pear", 1, 500, "w2"),
        (2, "plum", "Plüm", 3, 150, "w1"),
    ]
    stored_discounts = await rows(
        engine, sa.select(order_discounts).where(order_discounts.c.order_id == oid).order_by(order_discounts.c.position)
    )
    assert [(r.position, r.code, r.amount_minor) for r in stored_discounts] == [(0, "SAVE1", 100), (1, "HALF", 50)]

    trips.take()
    again, created_again = await create(new)
    # The insert finds the session's order (nothing written), then reads it.
    assert trips.take() == Trips(statements=2, autocommit=2)
    assert not created_again
    assert again == order

    confirmed = await record(order.order_id, PaymentOutcome.CAPTURED, payment_id=payment_id, cause="payment captured")
    # Status + history + OrderConfirmed in one statement (was 2 in one transaction).
    assert trips.take() == Trips(statements=1, autocommit=1)
    assert confirmed.status == OrderStatus.CONFIRMED
    assert confirmed.lines == new.lines and confirmed.discounts == new.discounts

    # The payment service's event for the same capture arrives after checkout recorded it.
    event = captured(payment_id, order.order_id)
    assert await apply(event) == EventDisposition.RECORDED
    # Inbox claim + payment status + timeline entry in one statement; no status change, no outbox event.
    assert trips.take() == Trips(statements=1, autocommit=1)
    assert await apply(event) == EventDisposition.DUPLICATE
    # The claim finds the event seen, then the order as it is.
    assert trips.take() == Trips(statements=2, autocommit=2)

    entries = await rows(
        engine, sa.select(history.c.status, history.c.cause).where(history.c.order_id == oid).order_by(history.c.id)
    )
    assert [(r.status, r.cause) for r in entries] == [
        ("PENDING_PAYMENT", "order placed at checkout"),
        ("CONFIRMED", "payment captured"),
        ("CONFIRMED", "payment captured 34.00 USD"),
    ]
    events = await rows(engine, sa.select(outbox.c.event_type).where(outbox.c.aggregate_id == order.order_id))
    assert sorted(r.event_type for r in events) == ["OrderConfirmed", "OrderCreated"]
    claims = await rows(engine, sa.select(inbox.c.event_id).where(inbox.c.event_id == event.event_id))
    assert len(claims) == 1
    got = await _get(repo, order.order_id)
    assert got is not None and got.payment_status == PaymentStatus.CAPTURED


async def test_a_payment_event_first_confirms_in_one_statement_with_its_claim(
    counted: tuple[SqlUnitOfWork, RoundTrips, AsyncEngine], customer_id: str
) -> None:
    repo, trips, engine = counted
    record = RecordPayment(repo)
    apply = ApplyPaymentEvent(repo)
    payment_id = unique("pay")
    order, _ = await CreateOrder(repo)(new_order(unique("sess"), customer_id, payment_id))
    trips.take()

    event = captured(payment_id, order.order_id)
    assert await apply(event) == EventDisposition.APPLIED
    # Claim + status + payment status + history + OrderConfirmed in one statement.
    [(_, bound)] = trips.sent
    assert trips.take() == Trips(statements=1, autocommit=1)
    # The event data's keys are written into the SQL, not bound (they were 24 more parameters to convert each call).
    assert len(bound) <= 18, sorted(bound)
    got = await _get(repo, order.order_id)
    assert trips.take() == Trips(statements=1, autocommit=1)  # one statement, no transaction
    assert got is not None and got.status == OrderStatus.CONFIRMED and got.payment_outcome == PaymentOutcome.CAPTURED
    assert got.payment_status == PaymentStatus.CAPTURED
    assert got.lines == order.lines and got.discounts == order.discounts

    # Checkout's own RecordPayment comes second: same outcome, a no-op.
    again = await record(order.order_id, PaymentOutcome.CAPTURED, payment_id=payment_id)
    assert again.status == OrderStatus.CONFIRMED
    oid = uuid.UUID(order.order_id)
    entries = await rows(engine, sa.select(history.c.status).where(history.c.order_id == oid))
    assert sorted(r.status for r in entries) == ["CONFIRMED", "PENDING_PAYMENT"]


async def _payloads(engine: AsyncEngine, order_id: str) -> dict[str, dict[str, Any]]:
    got = await rows(
        engine,
        sa.select(outbox.c.event_type, outbox.c.payload, outbox.c.subject).where(outbox.c.aggregate_id == order_id),
    )
    assert all(r.subject == f"kassa.order.{r.event_type}" for r in got)
    return {r.event_type: r.payload for r in got}


async def test_events_written_by_the_statement_carry_what_event_data_says(
    counted: tuple[SqlUnitOfWork, RoundTrips, AsyncEngine], customer_id: str
) -> None:
    """The statement computes OrderConfirmed's data itself: it must be what ``event_data`` of the order says."""
    repo, trips, engine = counted
    payment_id = unique("pay")
    order, _ = await CreateOrder(repo)(new_order(unique("sess"), customer_id, payment_id))
    trips.take()
    confirmed = await RecordPayment(repo)(
        order.order_id, PaymentOutcome.CAPTURED, payment_id=payment_id, cause="payment captured"
    )
    [(sql, bound)] = trips.sent
    assert trips.take() == Trips(statements=1, autocommit=1)
    assert len(bound) <= 15, sorted(bound)  # 39 when the event data's keys were bound
    # Short enough for psycopg to keep its parsed form (4,096 characters; it was 4,943).
    assert len(sql) <= 4096, len(sql)
    payloads = await _payloads(engine, order.order_id)
    assert set(payloads) == {"OrderCreated", "OrderConfirmed"}
    assert payloads["OrderCreated"]["data"] == event_data(order, "order placed at checkout")
    assert payloads["OrderConfirmed"]["data"] == event_data(confirmed, "payment captured")
    for event_type, payload in payloads.items():
        assert payload["event_type"] == event_type and payload["aggregate_id"] == order.order_id
        assert uuid.UUID(payload["event_id"]) and payload["occurred_at"]


async def test_refused_and_repeated_steps_write_no_event(
    counted: tuple[SqlUnitOfWork, RoundTrips, AsyncEngine], customer_id: str
) -> None:
    """The guards of the merged statements refuse what they refused before, and a refusal writes no event."""
    repo, _, engine = counted
    create, record, apply = CreateOrder(repo), RecordPayment(repo), ApplyPaymentEvent(repo)
    payment_id = unique("pay")
    new = new_order(unique("sess"), customer_id, payment_id)
    order, _ = await create(new)
    assert not (await create(new))[1]  # the session's order again: no second order, no second OrderCreated
    with pytest.raises(FailedPrecondition):  # another payment never confirms it
        await record(order.order_id, PaymentOutcome.CAPTURED, payment_id=unique("other"))
    event = captured(payment_id, order.order_id)
    assert await apply(event) == EventDisposition.APPLIED
    assert await apply(event) == EventDisposition.DUPLICATE  # the event applied once
    # Confirmed already: the same outcome is a no-op, a failure is refused (a state moves only from PENDING_PAYMENT).
    assert (await record(order.order_id, PaymentOutcome.CAPTURED, payment_id=payment_id)).status == (
        OrderStatus.CONFIRMED
    )
    with pytest.raises(FailedPrecondition):
        await record(order.order_id, PaymentOutcome.FAILED, payment_id=payment_id)
    events = await rows(engine, sa.select(outbox.c.event_type).where(outbox.c.aggregate_id == order.order_id))
    assert sorted(r.event_type for r in events) == ["OrderConfirmed", "OrderCreated"]
    got = await _get(repo, order.order_id)
    assert got is not None and got.status == OrderStatus.CONFIRMED


async def test_a_step_wakes_the_publisher_only_when_its_statement_wrote_an_event(settings: Settings) -> None:
    engine = create_engine(str(settings.database_url), pool_size=1, application_name="kassa-order-wake")
    woken: list[int] = []
    uow = SqlUnitOfWork(engine, settings.pii_cipher(), on_commit=lambda: woken.append(1))
    try:
        payment_id = unique("pay")
        new = new_order(unique("sess"), unique("cust"), payment_id)
        order, _ = await CreateOrder(uow)(new)
        assert len(woken) == 1
        await CreateOrder(uow)(new)  # a retry writes nothing
        assert len(woken) == 1
        await RecordPayment(uow)(order.order_id, PaymentOutcome.CAPTURED, payment_id=payment_id)
        assert len(woken) == 2
        await RecordPayment(uow)(order.order_id, PaymentOutcome.CAPTURED, payment_id=payment_id)  # a repeat
        assert len(woken) == 2
    finally:
        await engine.dispose()


def authorized_by_session(payment_id: str, session_id: str, event_id: str | None = None) -> PaymentEvent:
    """PaymentAuthorized as payment publishes it: before the order exists, so it names the session only."""
    return PaymentEvent(
        event_id or str(uuid.uuid4()),
        PaymentEventType.AUTHORIZED,
        payment_id,
        "",
        session_id,
        PaymentStatus.AUTHORIZED,
        usd(3400),
    )


async def test_an_event_naming_the_session_is_one_statement_and_claimed_only_with_an_order(
    counted: tuple[SqlUnitOfWork, RoundTrips, AsyncEngine], customer_id: str
) -> None:
    repo, trips, engine = counted
    apply = ApplyPaymentEvent(repo)
    session_id, payment_id = unique("sess"), unique("pay")
    early = authorized_by_session(payment_id, session_id)
    trips.take()

    # Before the order exists: no order, and the event is not claimed; one statement (as the lookup it replaces).
    assert await apply(early) == EventDisposition.NO_ORDER
    assert trips.take() == Trips(statements=1, autocommit=1)
    assert await rows(engine, sa.select(inbox.c.event_id).where(inbox.c.event_id == early.event_id)) == []

    order, _ = await CreateOrder(repo)(new_order(session_id, customer_id, payment_id))
    trips.take()
    # Found by its session in the same statement as the claim and the record (was a lookup of the id, then it).
    assert await apply(early) == EventDisposition.RECORDED  # the same event again (a republish): now it applies
    assert trips.take() == Trips(statements=1, autocommit=1)
    assert await apply(early) == EventDisposition.DUPLICATE
    assert trips.take() == Trips(statements=2, autocommit=2)
    got = await _get(repo, order.order_id)
    assert (
        got is not None and got.payment_status == PaymentStatus.AUTHORIZED and got.status == OrderStatus.PENDING_PAYMENT
    )
    claims = await rows(engine, sa.select(inbox.c.event_id).where(inbox.c.event_id == early.event_id))
    assert len(claims) == 1
    # Another session's order is never touched by it.
    other = authorized_by_session(payment_id, unique("sess"))
    assert await apply(other) == EventDisposition.NO_ORDER


@pytest.mark.parametrize("naming", ["session", "order"])
async def test_a_capture_confirms_with_its_event(
    counted: tuple[SqlUnitOfWork, RoundTrips, AsyncEngine], customer_id: str, naming: str
) -> None:
    """Naming the order's session or the order itself, a capture confirms it in one statement that reads nothing of
    the order back, and writes the same OrderConfirmed event a full read of the order gives."""
    repo, trips, engine = counted
    session_id, payment_id = unique("sess"), unique("pay")
    order, _ = await CreateOrder(repo)(new_order(session_id, customer_id, payment_id))
    order_id, ref = ("", session_id) if naming == "session" else (order.order_id, "")
    event = PaymentEvent(
        str(uuid.uuid4()), PaymentEventType.CAPTURED, payment_id, order_id, ref, PaymentStatus.CAPTURED, usd(3400)
    )
    trips.take()
    assert await ApplyPaymentEvent(repo)(event) == EventDisposition.APPLIED
    assert trips.take() == Trips(statements=1, autocommit=1)
    got = await _get(repo, order.order_id)
    assert got is not None and got.status == OrderStatus.CONFIRMED
    payloads = await _payloads(engine, order.order_id)
    assert payloads["OrderConfirmed"]["aggregate_id"] == order.order_id
    assert payloads["OrderConfirmed"]["data"] == event_data(got, event.cause)


async def test_a_payment_transition_without_an_event_type_still_moves_the_order(
    counted: tuple[SqlUnitOfWork, RoundTrips, AsyncEngine], customer_id: str
) -> None:
    """A move depends on its target only: with no ``event_type`` the order moves (and records its payment status)
    in the one statement, and no event is written or counted."""
    repo, trips, engine = counted
    payment_id = unique("pay")
    order, _ = await CreateOrder(repo)(new_order(unique("sess"), customer_id, payment_id))
    t = Transition(
        order_id=order.order_id,
        cause="moved without an event",
        sources=frozenset({OrderStatus.PENDING_PAYMENT}),
        target=OrderStatus.CONFIRMED,
        payment_id=payment_id,
        payment_status=PaymentStatus.CAPTURED,
    )
    trips.take()
    async with repo.statement() as tx:
        done = await tx.orders.transition(t)
        assert tx.events == 0
    assert trips.take() == Trips(statements=1, autocommit=1)
    assert done.applied and done.recorded
    assert done.order is not None and done.order.status == OrderStatus.CONFIRMED
    assert done.order.payment_status == PaymentStatus.CAPTURED
    got = await _get(repo, order.order_id)
    assert got is not None and got.status == OrderStatus.CONFIRMED
    entries = await rows(engine, sa.select(history.c.status).where(history.c.order_id == uuid.UUID(order.order_id)))
    assert [r.status for r in entries][-1] == OrderStatus.CONFIRMED.value
    events = await rows(engine, sa.select(outbox.c.event_type).where(outbox.c.aggregate_id == order.order_id))
    assert [r.event_type for r in events] == ["OrderCreated"]


async def test_the_bench_sequence_runs_each_payment_event_as_one_statement_psycopg_keeps(
    counted: tuple[SqlUnitOfWork, RoundTrips, AsyncEngine], customer_id: str
) -> None:
    """The bench's card checkout: CreateOrder, RecordPayment, then payment's PaymentAuthorized (naming the session)
    and PaymentCaptured (naming the order). Each event records its payment status and a timeline entry in one
    statement short enough for psycopg to keep its parsed form (PaymentCaptured's was 6,104 characters, parsed
    again on every call), which reads back none of the order's lines, discounts or personal data."""
    repo, trips, engine = counted
    apply = ApplyPaymentEvent(repo)
    session_id, payment_id = unique("sess"), unique("pay")
    order, _ = await CreateOrder(repo)(new_order(session_id, customer_id, payment_id))
    await RecordPayment(repo)(order.order_id, PaymentOutcome.CAPTURED, payment_id=payment_id, cause="payment captured")
    trips.take()

    for event in (authorized_by_session(payment_id, session_id), captured(payment_id, order.order_id)):
        assert await apply(event) == EventDisposition.RECORDED
        [(sql, bound)] = trips.sent
        assert trips.take() == Trips(statements=1, autocommit=1)
        assert len(sql) <= 4096 and len(bound) <= 50, (event.event_type, len(sql), len(bound))
        # Nothing of the order comes back that the consumer does not use (no lines, discounts, personal data).
        assert "lines_json" not in sql and "discounts_json" not in sql and "email" not in sql, event.event_type

    got = await _get(repo, order.order_id)
    assert got is not None and (got.status, got.payment_status) == (OrderStatus.CONFIRMED, PaymentStatus.CAPTURED)
    entries = await rows(
        engine,
        sa.select(history.c.status, history.c.cause)
        .where(history.c.order_id == uuid.UUID(order.order_id))
        .order_by(history.c.id),
    )
    assert [(r.status, r.cause) for r in entries] == [
        ("PENDING_PAYMENT", "order placed at checkout"),
        ("CONFIRMED", "payment captured"),
        ("CONFIRMED", "payment authorized 34.00 USD"),
        ("CONFIRMED", "payment captured 34.00 USD"),
    ]


async def test_every_payment_event_statement_is_short_enough_for_psycopg_to_keep(
    counted: tuple[SqlUnitOfWork, RoundTrips, AsyncEngine], customer_id: str
) -> None:
    """Each shape of the payment-event statement the consumer runs (an order named by id or by session; an event that
    may move the order or only records), and RecordPayment's capture-on-shipment one, stays under psycopg's limits of
    4,096 characters and 50 parameters."""
    repo, trips, _ = counted
    apply = ApplyPaymentEvent(repo)
    lengths: dict[str, int] = {}

    def one(what: str) -> None:
        [(sql, bound)] = trips.sent
        trips.take()
        assert len(bound) <= 50, (what, len(bound))
        lengths[what] = len(sql)

    session_id, payment_id = unique("sess"), unique("pay")
    order, _ = await CreateOrder(repo)(new_order(session_id, customer_id, payment_id))
    trips.take()
    assert await apply(authorized_by_session(payment_id, session_id)) == EventDisposition.RECORDED
    one("authorized, by session")
    capture = PaymentEvent(
        str(uuid.uuid4()), PaymentEventType.CAPTURED, payment_id, "", session_id, PaymentStatus.CAPTURED, usd(3400)
    )
    assert await apply(capture) == EventDisposition.APPLIED
    one("captured, by session")

    payment_id = unique("pay")
    order, _ = await CreateOrder(repo)(new_order(unique("sess"), customer_id, payment_id))
    trips.take()
    authorized = PaymentEvent(
        str(uuid.uuid4()), PaymentEventType.AUTHORIZED, payment_id, order.order_id, "", PaymentStatus.AUTHORIZED
    )
    assert await apply(authorized) == EventDisposition.RECORDED
    one("authorized, by id")
    assert await apply(captured(payment_id, order.order_id)) == EventDisposition.APPLIED
    one("captured, by id")

    payment_id = unique("pay")
    order, _ = await CreateOrder(repo)(new_order(unique("sess"), customer_id, payment_id))
    trips.take()
    held = await RecordPayment(repo)(order.order_id, PaymentOutcome.AUTHORIZED, payment_id=payment_id)
    assert held.status == OrderStatus.CONFIRMED and held.payment_status == PaymentStatus.AUTHORIZED
    assert held.lines == order.lines and held.email == order.email  # RecordPayment answers with the whole order
    one("RecordPayment authorized")
    assert all(n <= 4096 for n in lengths.values()), lengths
