"""Round trips per call (issue 4): the checkout use cases on the real SQL unit of work, fake neighbours.

Counted with SQLAlchemy's engine events on an engine of the test's own; what the calls answer and
write is checked against a fresh read, since answering from what was written is how the reads went.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from helpers import RoundTrips, Trips, unique

from checkout.biz.cart import manage
from checkout.biz.cart.manage import CartUseCases
from checkout.biz.cart.recent import RecentCarts
from checkout.biz.checkout import start as start_module
from checkout.biz.checkout import update_state
from checkout.biz.checkout.compensations import Compensator
from checkout.biz.checkout.complete_payment import PaymentCompletion
from checkout.biz.checkout.confirm import ConfirmCheckout
from checkout.biz.checkout.expiry import SessionExpiry
from checkout.biz.checkout.pricing_engine import PricingEngine
from checkout.biz.checkout.recent import RecentSessions
from checkout.biz.checkout.settle import Settlement
from checkout.biz.checkout.start import StartCheckout
from checkout.biz.checkout.update_state import CheckoutState, StateUpdate
from checkout.biz.policy import CheckoutPolicy
from checkout.biz.ports import Gateways, KeptAnswer, NewEvent, SessionEnd
from checkout.data.repositories import SqlUnitOfWork
from checkout.data.tables import checkout_sessions, outbox
from checkout.model.cart import CartStatus
from checkout.model.catalog import Address, PaymentStatus
from checkout.model.compensation import CompensationFilter, NewCompensation, Operation
from checkout.model.session import ConfirmError, ConfirmRecord, SagaState, SagaStep, Session, SessionStatus
from infra.config import Settings
from infra.db import create_engine
from kernel.caller import Caller
from kernel.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, Reason, Unavailable
from tests.checkout.fakes import FakeIdempotencyStore, fake_gateways

pytestmark = pytest.mark.integration

ADDRESS = Address("Ada Lovelace", "12 Analytical St", "", "London", "", "N1 9GU", "GB", "")
FILLED_IN = StateUpdate(
    email="ada@example.com", shipping_address=ADDRESS, shipping_method="standard", payment_method="tok_visa"
)
# One write of one statement, committed by itself: no BEGIN/COMMIT round trips.
ONE_STATEMENT = Trips(statements=1, autocommit=1)
OWNERSHIP_READ = Trips(statements=1, autocommit=1)
_SESSION_UPDATE = re.compile(r"^(WITH \w+ AS\s*\()?UPDATE \S*checkout_sessions SET ")
_SAGA_STEP = re.compile(r"\bsaga_step=%\((\w+)\)s")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def counted(settings: Settings) -> AsyncIterator[tuple[SqlUnitOfWork, RoundTrips]]:
    assert settings.database_url
    engine = create_engine(settings.database_url, pool_size=2, application_name="kassa-checkout-round-trips")
    yield SqlUnitOfWork(engine, settings.pii_cipher()), RoundTrips(engine)
    await engine.dispose()


@dataclass
class Checkout:
    """The use cases as bootstrap wires them, on the counted engine, for one customer."""

    gateways: Gateways
    carts: CartUseCases
    start: StartCheckout
    state: CheckoutState
    confirm: ConfirmCheckout
    trips: RoundTrips
    customer: Caller

    async def cart_with(self, *skus: str) -> str:
        for sku in skus:
            if sku not in self.gateways.pricing.products:  # type: ignore[attr-defined]
                self.gateways.pricing.add(sku, 1000)  # type: ignore[attr-defined]
            self.gateways.inventory.stock[sku] = 10  # type: ignore[attr-defined]
        cart = await self.carts.create(self.customer, "USD")
        for sku in skus:
            await self.carts.add_item(self.customer, cart.cart_id, sku, 1)
        return cart.cart_id

    async def filled_in_session(self, codes: tuple[str, ...] = ()) -> Session:
        session, _ = await self.start(self.customer, await self.cart_with("SKU-1", "SKU-2"))
        return await self.state.update(
            self.customer, session.session_id, replace(FILLED_IN, promotion_codes=list(codes))
        )


@pytest.fixture
def checkout(counted: tuple[SqlUnitOfWork, RoundTrips], customer_id: str) -> Checkout:
    uow, trips = counted
    gateways = fake_gateways()
    policy = CheckoutPolicy()
    engine = PricingEngine(gateways.pricing, gateways.promotion, policy.pricing_deadline_seconds)
    compensator = Compensator(uow, gateways, policy.retry)
    recent = RecentSessions()  # as bootstrap wires them: what StartCheckout opens, UpdateCheckoutState knows
    carts = RecentCarts()  # and what the cart use cases write, StartCheckout drops when it freezes it
    return Checkout(
        gateways=gateways,
        carts=CartUseCases(uow, gateways.pricing, policy, recent=carts),
        start=StartCheckout(
            uow, gateways, policy, compensator, SessionExpiry(uow, compensator), recent=recent, recent_carts=carts
        ),
        state=CheckoutState(uow, engine, recent=recent),
        confirm=ConfirmCheckout(
            uow,
            gateways,
            engine,
            FakeIdempotencyStore(),
            compensator,
            settlement=Settlement(uow, gateways, compensator, policy),
            policy=policy,
            recent=recent,
        ),
        trips=trips,
        customer=Caller(customer_id),
    )


def verbs(trips: RoundTrips) -> list[str]:
    return [statement.split(None, 1)[0] for statement, _ in trips.sent]


def saga_steps(trips: RoundTrips) -> list[str]:
    """The saga_step each UPDATE of a checkout session sent set, in order ("-" where it set none)."""
    steps = []
    for statement, parameters in trips.sent:
        if _SESSION_UPDATE.match(statement):
            bound = _SAGA_STEP.search(statement)
            steps.append(str(parameters[bound.group(1)]) if bound else "-")
    return steps


async def test_create_cart_is_one_insert_returning(checkout: Checkout) -> None:
    trips = checkout.trips
    trips.take()

    cart = await checkout.carts.create(checkout.customer, "usd")

    assert trips.take() == ONE_STATEMENT
    assert cart == await checkout.carts.get(checkout.customer, cart.cart_id)
    assert cart.currency_code == "USD" and cart.customer_id == checkout.customer.subject and cart.items == []


async def test_add_cart_item_to_a_cart_this_process_wrote_last_is_one_statement(checkout: Checkout) -> None:
    trips, customer = checkout.trips, checkout.customer
    cart_id = await checkout.cart_with()
    for sku, price in (("SKU-A", 1000), ("SKU-B", 250)):
        checkout.gateways.pricing.add(sku, price)  # type: ignore[attr-defined]

    # A new line, a second one after it, then more of the first: each answered from what was written.
    for sku, quantity, lines in (
        ("SKU-A", 2, [("SKU-A", 2, 1000)]),
        ("SKU-B", 1, [("SKU-A", 2, 1000), ("SKU-B", 1, 250)]),
        ("SKU-A", 3, [("SKU-A", 5, 1000), ("SKU-B", 1, 250)]),
    ):
        trips.take()
        answer = await checkout.carts.add_item(customer, cart_id, sku, quantity)
        # The cart as this process wrote it last (CreateCart, then each AddCartItem), checked as kept: one
        # autocommit statement bumps the cart's version only if still the one kept (UPDATE … RETURNING) and
        # upserts the line with it (a CTE); no read first.
        assert verbs(trips) == ["WITH"]
        assert trips.take() == ONE_STATEMENT
        assert [(i.sku, i.quantity, i.unit_price_minor) for i in answer.items] == lines
        assert answer == await checkout.carts.get(customer, cart_id)


async def test_add_cart_item_to_a_cart_another_replica_wrote_reads_it_then_writes_in_one_statement(
    checkout: Checkout, counted: tuple[SqlUnitOfWork, RoundTrips]
) -> None:
    trips, customer = checkout.trips, checkout.customer
    cart_id = await checkout.cart_with("SKU-1")
    replica = CartUseCases(counted[0], checkout.gateways.pricing, CheckoutPolicy())  # keeps no cart yet
    trips.take()

    answer = await replica.add_item(customer, cart_id, "SKU-1", 2)

    # The cart with its lines (one autocommit SELECT); then the one-statement write at the version read.
    assert verbs(trips) == ["SELECT", "WITH"]
    assert trips.take() == Trips(statements=2, autocommit=2)
    assert [(i.sku, i.quantity) for i in answer.items] == [("SKU-1", 3)]
    assert answer == await checkout.carts.get(customer, cart_id)
    # Then the first replica's kept cart is stale: its one statement writes nothing and reads the cart as it is,
    # and the line is written at that version. Two statements, as with a read first; nothing lost.
    trips.take()
    answer = await checkout.carts.add_item(customer, cart_id, "SKU-1", 4)
    assert verbs(trips) == ["WITH", "WITH"]
    assert trips.take() == Trips(statements=2, autocommit=2)
    assert [(i.sku, i.quantity) for i in answer.items] == [("SKU-1", 7)]  # 1 + 2 + 4
    assert answer == await checkout.carts.get(customer, cart_id)


async def test_a_kept_cart_never_decides_a_refusal(
    checkout: Checkout, counted: tuple[SqlUnitOfWork, RoundTrips]
) -> None:
    """Answers are the cart's as it is now: a refusal the kept cart would give is checked on a fresh read, a
    cart frozen meanwhile is refused with nothing written, and another customer finds nothing."""
    trips, customer, uow = checkout.trips, checkout.customer, counted[0]
    most = CheckoutPolicy().max_item_quantity
    cart_id = await checkout.cart_with("SKU-1")
    await checkout.carts.add_item(customer, cart_id, "SKU-1", most - 1)  # kept at the most a line may hold
    replica = CartUseCases(uow, checkout.gateways.pricing, CheckoutPolicy())
    await replica.update_item(customer, cart_id, "SKU-1", 1)  # another replica lowers it
    trips.take()

    answer = await checkout.carts.add_item(customer, cart_id, "SKU-1", 2)  # too many for the kept cart only

    assert verbs(trips) == ["SELECT", "WITH"]  # checked on a fresh read, and accepted
    assert [(i.sku, i.quantity) for i in answer.items] == [("SKU-1", 3)]
    trips.take()
    with pytest.raises(InvalidArgument) as too_many:  # too many for the cart as it is: refused, nothing written
        await checkout.carts.add_item(customer, cart_id, "SKU-1", most)
    assert too_many.value.field == "quantity"
    assert verbs(trips) == ["SELECT"]

    with pytest.raises(NotFound):  # kept or not, another customer's cart is missing
        await checkout.carts.add_item(Caller(unique("cust")), cart_id, "SKU-1", 1)
    async with uow.single() as tx:  # frozen by a checkout after it was kept
        assert await tx.carts.transition(cart_id, {CartStatus.ACTIVE}, CartStatus.CHECKOUT)
    trips.take()
    with pytest.raises(FailedPrecondition) as frozen:
        await checkout.carts.add_item(customer, cart_id, "SKU-1", 1)
    assert frozen.value.reason == Reason.CHECKOUT_IN_PROGRESS
    assert verbs(trips) == ["WITH"]  # the one statement wrote nothing and read the cart frozen
    assert [(i.sku, i.quantity) for i in (await checkout.carts.get(customer, cart_id)).items] == [("SKU-1", 3)]


async def test_a_line_added_to_a_cart_that_changed_since_it_was_read_takes_the_locked_path(
    checkout: Checkout, counted: tuple[SqlUnitOfWork, RoundTrips], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-statement write applies only at the version read: a cart changed in between (another line added,
    or the cart frozen by a checkout) is checked and written, or refused, on the cart as it is now."""
    trips, customer, uow = checkout.trips, checkout.customer, counted[0]
    # A replica that keeps no cart reads the cart first.
    checkout.carts = CartUseCases(uow, checkout.gateways.pricing, CheckoutPolicy(), recent=RecentCarts(0))
    cart_id = await checkout.cart_with("SKU-1")
    checkout.gateways.pricing.add("SKU-2", 300)  # type: ignore[attr-defined]
    read_before = await checkout.carts.get(customer, cart_id)
    await checkout.carts.add_item(customer, cart_id, "SKU-1", 2)  # another request, after this one's read

    async def as_read_before(*_args: object, **_kwargs: object) -> Any:
        return read_before

    monkeypatch.setattr(manage, "load_owned_cart", as_read_before)
    trips.take()
    answer = await checkout.carts.add_item(customer, cart_id, "SKU-1", 4)

    # The one-statement write matched nothing (a stale version); the locked path adds to the line as it is now.
    assert verbs(trips) == ["WITH", "UPDATE", "SELECT", "INSERT"]
    assert trips.take() == Trips(statements=4, autocommit=1, transactions=1, commits=1)
    assert [(i.sku, i.quantity) for i in answer.items] == [("SKU-1", 7)]  # 1 + 2 + 4: nothing lost
    monkeypatch.undo()
    assert answer == await checkout.carts.get(customer, cart_id)

    # Frozen meanwhile (a checkout started after the read): refused, with nothing written.
    read_before = await checkout.carts.get(customer, cart_id)
    async with uow.single() as tx:
        assert await tx.carts.transition(cart_id, {CartStatus.ACTIVE}, CartStatus.CHECKOUT)
    monkeypatch.setattr(manage, "load_owned_cart", as_read_before)
    with pytest.raises(FailedPrecondition) as frozen:
        await checkout.carts.add_item(customer, cart_id, "SKU-2", 1)
    monkeypatch.undo()
    assert frozen.value.reason == Reason.CHECKOUT_IN_PROGRESS
    assert [(i.sku, i.quantity) for i in (await checkout.carts.get(customer, cart_id)).items] == [("SKU-1", 7)]


async def test_concurrent_additions_to_one_line_all_count(checkout: Checkout) -> None:
    customer = checkout.customer
    cart_id = await checkout.cart_with("SKU-1")

    await asyncio.gather(*(checkout.carts.add_item(customer, cart_id, "SKU-1", 1) for _ in range(6)))

    assert [(i.sku, i.quantity) for i in (await checkout.carts.get(customer, cart_id)).items] == [("SKU-1", 7)]


async def test_start_checkout_reads_the_cart_once_and_opens_the_session_in_one_statement(checkout: Checkout) -> None:
    trips, customer = checkout.trips, checkout.customer
    cart_id = await checkout.cart_with("SKU-1", "SKU-2")
    trips.take()

    session, changes = await checkout.start(customer, cart_id)

    # The cart with its lines; then the cart moved to CHECKOUT at the version priced and the session inserted with
    # that move (a CTE), in one autocommit statement.
    assert verbs(trips) == ["SELECT", "WITH"]
    assert trips.take() == Trips(statements=2, autocommit=2)
    assert changes == [] and [ln.sku for ln in session.lines] == ["SKU-1", "SKU-2"]
    assert session == await checkout.state.get(customer, session.session_id)
    assert (await checkout.carts.get(customer, cart_id)).status is CartStatus.CHECKOUT
    again, _ = await checkout.start(customer, cart_id)  # a repeat answers the live session
    assert again.session_id == session.session_id


async def test_start_checkout_of_a_cart_changed_after_it_was_priced_creates_no_session(
    checkout: Checkout, counted: tuple[SqlUnitOfWork, RoundTrips], monkeypatch: pytest.MonkeyPatch
) -> None:
    customer, uow = checkout.customer, counted[0]
    cart_id = await checkout.cart_with("SKU-1")
    read_before = await checkout.carts.get(customer, cart_id)
    await checkout.carts.add_item(customer, cart_id, "SKU-1", 1)  # the cart changes after StartCheckout read it
    monkeypatch.setattr(start_module, "load_owned_cart", lambda *_a, **_k: asyncio.sleep(0, read_before))

    with pytest.raises(Aborted) as refused:
        await checkout.start(customer, cart_id)

    monkeypatch.undo()
    assert refused.value.reason == Reason.CHECKOUT_IN_PROGRESS
    cart = await checkout.carts.get(customer, cart_id)
    assert cart.status is CartStatus.ACTIVE and cart.version == read_before.version + 1  # untouched by the refusal
    async with uow.read() as tx:
        assert await tx.sessions.get_live_for_cart(cart_id) is None
    held = checkout.gateways.inventory.held  # type: ignore[attr-defined]
    assert [h.status for h in held.values()] == ["RELEASED"]  # the stock reserved for it is given back


async def test_ownership_checks_are_one_autocommit_read(checkout: Checkout) -> None:
    trips, stranger = checkout.trips, Caller(unique("cust"))
    session = await checkout.filled_in_session()
    trips.take()

    mine = await checkout.state.get(checkout.customer, session.session_id)
    assert trips.take() == OWNERSHIP_READ
    assert mine.session_id == session.session_id and mine.preview == session.preview
    with pytest.raises(NotFound):
        await checkout.state.get(stranger, session.session_id)
    assert trips.take() == OWNERSHIP_READ
    with pytest.raises(NotFound):
        await checkout.carts.add_item(stranger, session.cart_id, "SKU-1", 1)
    assert trips.take() == OWNERSHIP_READ  # refused on the cart head, before anything is written


async def test_update_checkout_state_stores_the_changes_and_their_preview_in_one_update(checkout: Checkout) -> None:
    trips, customer = checkout.trips, checkout.customer
    started, _ = await checkout.start(customer, await checkout.cart_with("SKU-1"))
    trips.take()

    answer = await checkout.state.update(customer, started.session_id, FILLED_IN)

    # The session as StartCheckout opened it here, priced as the update will leave it; the changes and the preview
    # in one autocommit UPDATE … RETURNING, applied only while the session is unchanged since: no read first.
    assert verbs(trips) == ["UPDATE"]
    assert trips.take() == ONE_STATEMENT
    stored = await checkout.state.get(customer, started.session_id)
    assert answer.preview is not None and answer.preview.grand_total_minor > 0
    assert answer.preview.shipping_minor > 0  # priced with the address and method of this very update
    assert answer.email == "ada@example.com" and answer.shipping_address == ADDRESS
    assert answer == stored
    trips.take()
    again = await checkout.state.update(customer, started.session_id, StateUpdate(shipping_method="express"))
    assert verbs(trips) == ["UPDATE"]  # and on from the session as the last update left it
    assert again == await checkout.state.get(customer, started.session_id)
    assert again.preview is not None and again.preview.shipping_minor > answer.preview.shipping_minor


async def test_update_checkout_state_on_another_replica_reads_the_session_first(
    checkout: Checkout, counted: tuple[SqlUnitOfWork, RoundTrips]
) -> None:
    trips, customer = checkout.trips, checkout.customer
    started, _ = await checkout.start(customer, await checkout.cart_with("SKU-1"))
    replica = CheckoutState(counted[0], checkout.state._engine, recent=RecentSessions())
    trips.take()

    answer = await replica.update(customer, started.session_id, FILLED_IN)

    assert verbs(trips) == ["SELECT", "UPDATE"]  # it knows no session: the read, then the one-statement write
    assert trips.take() == Trips(statements=2, autocommit=2)
    assert answer == await checkout.state.get(customer, started.session_id)
    # The first replica's session is now stale: its write matches nothing, and the session is read and priced as it
    # is (the other replica's changes kept).
    trips.take()
    mine = await checkout.state.update(customer, started.session_id, StateUpdate(shipping_method="express"))
    assert verbs(trips) == ["UPDATE", "SELECT", "UPDATE"]
    assert mine.email == "ada@example.com" and mine.shipping_address == ADDRESS and mine.shipping_method == "express"
    assert mine == await checkout.state.get(customer, started.session_id)
    express = await replica.update(customer, started.session_id, StateUpdate(shipping_method="express"))
    assert mine.preview is not None and mine.preview == express.preview  # priced as it is, not as it was kept


async def test_a_kept_session_never_decides_a_refusal(
    checkout: Checkout, counted: tuple[SqlUnitOfWork, RoundTrips], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Expired (or moved on) since it was kept: the write matches nothing and the session as it is refuses. A
    pricing failure on the kept session is answered only once a read shows the session is still the one priced."""
    trips, customer, uow = checkout.trips, checkout.customer, counted[0]
    started, _ = await checkout.start(customer, await checkout.cart_with("SKU-1"))
    engine = checkout.state._engine

    async def unavailable(_data: Any) -> Any:
        raise Unavailable("pricing is down")

    monkeypatch.setattr(engine, "compute", unavailable)
    trips.take()
    with pytest.raises(Unavailable):
        await checkout.state.update(customer, started.session_id, FILLED_IN)
    assert verbs(trips) == ["SELECT"]  # the session is still the one priced: its failure is the answer
    monkeypatch.undo()

    async with uow.single() as tx:  # its reservations ran out (expires_at alone changes)
        await tx.conn.execute(
            checkout_sessions.update()
            .where(checkout_sessions.c.session_id == started.session_id)
            .values(expires_at=sa.func.now() - sa.text("interval '1 second'"))
        )
    trips.take()
    with pytest.raises(FailedPrecondition) as expired:
        await checkout.state.update(customer, started.session_id, FILLED_IN)
    assert expired.value.reason == Reason.SESSION_EXPIRED
    assert verbs(trips) == ["UPDATE", "SELECT"]  # the guarded write matched nothing; the session as read refuses
    stored = await checkout.state.get(customer, started.session_id)
    assert stored.email == "" and stored.preview is None  # nothing written


async def test_an_update_racing_another_one_prices_the_session_as_both_left_it(
    checkout: Checkout, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = checkout.customer
    checkout.state = CheckoutState(checkout.state._uow, checkout.state._engine)  # keeps no session: reads first
    started, _ = await checkout.start(customer, await checkout.cart_with("SKU-1"))
    read = await checkout.state.get(customer, started.session_id)
    # Another request changes the session between this update's read and its write.
    await checkout.state.update(customer, started.session_id, StateUpdate(shipping_method="express"))

    async def as_read_before(*_args: object) -> Session:
        return read

    monkeypatch.setattr(update_state, "load_owned_session", as_read_before)
    answer = await checkout.state.update(customer, started.session_id, StateUpdate(shipping_address=ADDRESS))
    monkeypatch.undo()

    assert answer.shipping_method == "express" and answer.shipping_address == ADDRESS
    express = await checkout.state.update(customer, started.session_id, StateUpdate(shipping_method="express"))
    assert answer.preview is not None and express.preview is not None
    assert answer.preview.shipping_minor == express.preview.shipping_minor  # priced as express, not as it was read


@pytest.mark.parametrize(
    ("codes", "steps"),
    [
        ((), ["validated", "authorize_payment", "create_order", "done"]),
        (("SAVE10",), ["validated", "reserve_promotion", "authorize_payment", "create_order", "done"]),
    ],
)
async def test_confirm_writes_progress_only_before_authorize_and_create_order(
    checkout: Checkout, counted: tuple[SqlUnitOfWork, RoundTrips], codes: tuple[str, ...], steps: list[str]
) -> None:
    trips, uow = checkout.trips, counted[0]
    checkout.gateways.promotion.add("SAVE10", 10)  # type: ignore[attr-defined]
    session = await checkout.filled_in_session(codes)
    assert session.preview is not None and session.preview.applied_codes == list(codes)
    trips.take()

    key = unique("key")
    result = await checkout.confirm(checkout.customer, session.session_id, key, session.preview.grand_total)

    assert saga_steps(trips) == steps
    trips_sent = list(trips.sent)
    progress = len(steps) - 2  # the writes between the guard (validated) and the finish (done)
    # No read: the session as UpdateCheckoutState wrote it on this replica, which the guard requires unchanged.
    # The guard (answering the cart's status too) and each progress write, one statement each; then the finish: the
    # session, the request's replay record, the cart and two outbox events as CTEs of one statement. All autocommit.
    assert trips.take() == Trips(statements=1 + progress + 1, autocommit=1 + progress + 1)
    finish = trips_sent[-1][0]
    for written in ("UPDATE checkout.checkout_sessions", "INSERT INTO checkout.confirm_requests",
                    "UPDATE checkout.carts", "INSERT INTO checkout.outbox"):  # fmt: skip
        assert written in finish
    async with uow.read() as tx:
        kept = await tx.confirm_records.get(checkout.customer.subject, key, 86_400)
    assert kept is not None and kept.result == result
    assert (await checkout.carts.get(checkout.customer, session.cart_id)).status is CartStatus.CONVERTED
    async with uow.read() as tx:
        events = (
            await tx.conn.execute(
                sa.select(outbox.c.event_type).where(outbox.c.aggregate_id.in_([session.session_id, session.cart_id]))
            )
        ).scalars()
        assert sorted(events) == ["CartConverted", "CheckoutCompleted"]
    assert result.order_status == "CONFIRMED" and result.payment_status == "CAPTURED"
    stored = await checkout.state.get(checkout.customer, session.session_id)
    assert stored.status is SessionStatus.COMPLETED and stored.saga_step is SagaStep.DONE
    assert stored.result == result and stored.order_id == result.order_id


async def test_the_bench_flow_costs_twelve_statements_and_two_redis_calls_on_one_replica(
    checkout: Checkout, counted: tuple[SqlUnitOfWork, RoundTrips]
) -> None:
    """The bench's checkout (CreateCart, AddCartItem x3, StartCheckout, UpdateCheckoutState, PreviewOrder,
    ConfirmCheckout, then payment's two events) as one replica serves it: 12 statements to Postgres, all
    autocommit, and 2 calls to Redis. Before issue 11's round: 19 statements (a read before each AddCartItem,
    UpdateCheckoutState and ConfirmCheckout, and one per payment event) and 4 Redis commands."""
    trips, customer, uow = checkout.trips, checkout.customer, counted[0]
    skus = ("SKU-1", "SKU-2", "SKU-3")
    for sku in skus:
        checkout.gateways.pricing.add(sku, 1000)  # type: ignore[attr-defined]
        checkout.gateways.inventory.stock[sku] = 10  # type: ignore[attr-defined]
    store = checkout.confirm._lock
    policy = CheckoutPolicy()
    compensator = Compensator(uow, checkout.gateways, policy.retry)
    completion = PaymentCompletion(uow, checkout.gateways, checkout.confirm._settlement, compensator, policy)
    trips.take()
    store.calls = 0  # type: ignore[attr-defined]

    cart = await checkout.carts.create(customer, "USD")
    for sku in skus:
        await checkout.carts.add_item(customer, cart.cart_id, sku, 1)
    started, _ = await checkout.start(customer, cart.cart_id)
    await checkout.state.update(customer, started.session_id, FILLED_IN)
    preview = await checkout.state.preview(customer, started.session_id)
    result = await checkout.confirm(customer, started.session_id, unique("key"), preview.grand_total)
    trips_sent = verbs(trips)
    trips_taken = trips.take()
    stored = await checkout.state.get(customer, started.session_id)
    payment_id = stored.saga_state.payment_id
    trips.take()
    for status, order_id in ((PaymentStatus.AUTHORIZED, ""), (PaymentStatus.CAPTURED, result.order_id)):
        assert await completion.on_payment(started.session_id, payment_id, status, order_id=order_id) == "nothing to do"

    assert trips_sent == [
        "INSERT",  # CreateCart
        "WITH", "WITH", "WITH",  # AddCartItem x3: the line written at the version kept
        "SELECT", "WITH",  # StartCheckout: the cart, then its move and the session in one statement
        "UPDATE",  # UpdateCheckoutState: the changes and their totals, on the session kept
        "SELECT",  # PreviewOrder
        "UPDATE", "UPDATE", "UPDATE", "WITH",  # ConfirmCheckout: the guard, progress x2, the finish
    ]  # fmt: skip
    assert trips_taken == Trips(statements=12, autocommit=12)
    assert trips.take() == Trips()  # the payment events: nothing read
    assert store.calls == 2  # type: ignore[attr-defined]
    assert result.payment_status == "CAPTURED" and stored.status is SessionStatus.COMPLETED


async def test_a_confirm_on_a_session_changed_since_this_replica_kept_it_is_decided_as_it_is_now(
    checkout: Checkout, counted: tuple[SqlUnitOfWork, RoundTrips]
) -> None:
    """Another replica changed the payment method after this one kept the session: the guard, which requires the
    kept session, starts nothing; the session is read, and the request fingerprinted, guarded and answered as it
    is now: charged with the new method, and replayed for the same key (from Redis, then from Postgres)."""
    trips, customer, uow = checkout.trips, checkout.customer, counted[0]
    session = await checkout.filled_in_session()
    replica = CheckoutState(uow, checkout.state._engine, recent=RecentSessions())
    changed = await replica.update(customer, session.session_id, StateUpdate(payment_method="cod"))
    assert changed.preview is not None
    key = unique("key")
    trips.take()

    result = await checkout.confirm(customer, session.session_id, key, changed.preview.grand_total)

    assert verbs(trips)[:3] == ["UPDATE", "SELECT", "UPDATE"]  # guard (nothing), the session as it is, the guard
    assert result.payment_status == "CASH_ON_DELIVERY"
    stored = await checkout.state.get(customer, session.session_id)
    assert stored.status is SessionStatus.COMPLETED and stored.payment_method == "cod"
    assert await checkout.confirm(customer, session.session_id, key, changed.preview.grand_total) == result
    checkout.confirm._lock.results.clear()  # type: ignore[attr-defined]
    assert await checkout.confirm(customer, session.session_id, key, changed.preview.grand_total) == result


async def test_payment_events_for_a_session_this_process_ended_read_nothing(
    checkout: Checkout, counted: tuple[SqlUnitOfWork, RoundTrips]
) -> None:
    """As bootstrap wires them, the saga and the payment-event handler share one Settlement: a card checkout's
    two events, which come after its saga ended COMPLETED, are acknowledged with no statement; another replica
    (a Settlement of its own) decides them on one narrow read each, the same way."""
    trips, uow = checkout.trips, counted[0]
    session = await checkout.filled_in_session()
    assert session.preview is not None
    result = await checkout.confirm(checkout.customer, session.session_id, unique("key"), session.preview.grand_total)
    pid = (await checkout.state.get(checkout.customer, session.session_id)).saga_state.payment_id
    policy, compensator = CheckoutPolicy(), Compensator(uow, checkout.gateways, CheckoutPolicy().retry)
    here = PaymentCompletion(uow, checkout.gateways, checkout.confirm._settlement, compensator, policy)
    replica = PaymentCompletion(
        uow, checkout.gateways, Settlement(uow, checkout.gateways, compensator, policy), compensator, policy
    )

    for completion, statements in ((here, 0), (replica, 2)):
        trips.take()
        assert await completion.on_payment(session.session_id, pid, PaymentStatus.AUTHORIZED) == "nothing to do"
        assert (
            await completion.on_payment(session.session_id, pid, PaymentStatus.CAPTURED, order_id=result.order_id)
            == "nothing to do"
        )
        assert trips.take() == Trips(statements=statements, autocommit=statements)
    assert checkout.gateways.payment.count("void") == 0  # type: ignore[attr-defined]
    assert checkout.gateways.payment.count("refund") == 0  # type: ignore[attr-defined]


async def test_a_declined_confirm_keeps_its_answer_in_the_transaction_that_cancels_the_session(
    checkout: Checkout, counted: tuple[SqlUnitOfWork, RoundTrips]
) -> None:
    trips, uow = checkout.trips, counted[0]
    session = await checkout.state.update(
        checkout.customer,
        (await checkout.filled_in_session()).session_id,
        StateUpdate(payment_method="tok_chargeDeclined"),
    )
    assert session.preview is not None
    key = unique("key")
    trips.take()

    with pytest.raises(FailedPrecondition) as declined:
        await checkout.confirm(checkout.customer, session.session_id, key, session.preview.grand_total)

    assert declined.value.reason == Reason.PAYMENT_DECLINED
    assert saga_steps(trips) == ["validated", "authorize_payment", "compensating", "compensating"]
    finish = trips.sent[-1][0]
    for written in ("UPDATE checkout.checkout_sessions", "INSERT INTO checkout.confirm_requests",
                    "UPDATE checkout.carts"):  # fmt: skip
        assert written in finish
    assert "checkout.outbox" not in finish  # an undone checkout writes no event
    # The guard (with the cart's status; no read first, the session kept as this replica wrote it), the progress
    # before authorize, the undo's start; then the session cancelled, the answer kept and the cart given back, in
    # one statement. All autocommit.
    assert trips.take() == Trips(statements=1 + 1 + 1 + 1, autocommit=4)
    async with uow.read() as tx:
        kept = await tx.confirm_records.get(checkout.customer.subject, key, 86_400)
    assert kept is not None and kept.error is not None and kept.error.reason == Reason.PAYMENT_DECLINED
    stored = await checkout.state.get(checkout.customer, session.session_id)
    assert stored.status is SessionStatus.CANCELLED and stored.confirm_fingerprint is None


async def test_a_finish_under_a_lost_lease_writes_none_of_what_it_carries(
    checkout: Checkout, counted: tuple[SqlUnitOfWork, RoundTrips]
) -> None:
    """The one-statement finish refuses as the transaction did: another owner's attempt writes no session end, no
    kept answer, no DLQ entry, no cart move and no event; the owner's writes them all."""
    uow, customer = counted[0], checkout.customer
    session = await checkout.filled_in_session()
    async with uow.single() as tx:
        begun = await tx.sessions.begin_confirm_with_cart(session.session_id, unique("key"), "fp")
    assert begun is not None and begun[1] is CartStatus.CHECKOUT
    started = begun[0]
    record = ConfirmRecord(session.session_id, "fp", error=ConfirmError("Aborted", "UNAVAILABLE", "undone", {}))
    end = SessionEnd(
        cart_id=session.cart_id,
        cart_to=CartStatus.CONVERTED,
        kept=KeptAnswer(customer.subject, started.idempotency_key or "", record),
        compensations=[NewCompensation(session.session_id, Operation.CAPTURE_PAYMENT, {"payment_id": "p"}, "down")],
        if_cart_moved=[NewEvent("CartConverted", session.cart_id, {"cart_id": session.cart_id})],
        events=[NewEvent("CheckoutCompleted", session.session_id, {"session_id": session.session_id})],
    )

    async def written() -> tuple[Any, ...]:
        async with uow.read() as tx:
            kept = await tx.confirm_records.get(customer.subject, started.idempotency_key or "", 86_400)
            queued = await tx.compensations.list(CompensationFilter(session_id=session.session_id), 10)
            cart = await tx.carts.get_head(session.cart_id)
            events = (
                await tx.conn.execute(
                    sa.select(sa.func.count()).where(outbox.c.aggregate_id.in_([session.session_id, session.cart_id]))
                )
            ).scalar_one()
            stored = await tx.sessions.get(session.session_id)
        assert cart is not None and stored is not None
        return kept is not None, len(queued), cart.status, events, stored.status

    for attempt in (started.saga_attempt + 1, started.saga_attempt - 1):
        async with uow.statement() as tx:
            assert not await tx.sessions.finish(
                session.session_id, SessionStatus.COMPLETED, step=SagaStep.DONE, state=SagaState(), attempt=attempt,
                end=end,
            )  # fmt: skip
            assert tx.events == 0
        assert await written() == (False, 0, CartStatus.CHECKOUT, 0, SessionStatus.CONFIRMING)

    async with uow.statement() as tx:
        assert await tx.sessions.finish(
            session.session_id, SessionStatus.COMPLETED, step=SagaStep.DONE, state=SagaState(),
            attempt=started.saga_attempt, end=end,
        )  # fmt: skip
        assert tx.events == 2
    assert await written() == (True, 1, CartStatus.CONVERTED, 2, SessionStatus.COMPLETED)
    async with uow.read() as tx:  # the rows infra.outbox.add_event would have written
        rows = (
            await tx.conn.execute(
                sa.select(outbox).where(outbox.c.aggregate_id.in_([session.session_id, session.cart_id]))
            )
        ).all()
    for row in rows:
        assert row.subject == f"kassa.checkout.{row.event_type}" and row.status == "pending"
        assert row.payload["event_id"] == str(row.event_id) and row.payload["event_type"] == row.event_type
        assert row.payload["aggregate_id"] == row.aggregate_id and row.payload["occurred_at"]
    assert {r.event_type: r.payload["data"] for r in rows} == {
        "CartConverted": {"cart_id": session.cart_id},
        "CheckoutCompleted": {"session_id": session.session_id},
    }


async def test_preview_shows_the_totals_stored_with_a_recent_change_and_prices_afresh_after(
    checkout: Checkout, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = checkout.customer
    started, _ = await checkout.start(customer, await checkout.cart_with("SKU-1"))
    state = CheckoutState(checkout.state._uow, checkout.state._engine, reuse_seconds=30)
    updated = await state.update(customer, started.session_id, FILLED_IN)
    assert updated.preview is not None
    priced = 0
    for name in ("quote_order", "get_products"):
        real = getattr(checkout.gateways.pricing, name)

        async def counted(*args: object, _real: Any = real, **kwargs: object) -> object:
            nonlocal priced
            priced += 1
            return await _real(*args, **kwargs)

        monkeypatch.setattr(checkout.gateways.pricing, name, counted)
    checkout.gateways.pricing.add("SKU-1", 9999)  # type: ignore[attr-defined]  # a new price meanwhile
    trips = checkout.trips
    trips.take()

    shown = await state.preview(customer, started.session_id)

    assert shown == updated.preview and priced == 0  # the stored totals, with no call to pricing
    assert trips.take() == OWNERSHIP_READ
    fresh = await checkout.state.preview(customer, started.session_id)  # reuse_seconds=0: always afresh
    assert priced == 1 and fresh.subtotal_minor == 9999 != shown.subtotal_minor
    with pytest.raises(Aborted) as refused:  # ConfirmCheckout prices afresh, whatever the preview showed
        await checkout.confirm(customer, started.session_id, "key-1", shown.grand_total)
    assert refused.value.reason == Reason.PRICE_CHANGED
    assert await state.preview(customer, started.session_id) == fresh  # the reopened session keeps those


async def test_a_session_changed_again_while_its_fallback_prices_it_keeps_no_totals_of_another_state(
    checkout: Checkout, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback stores its totals only while the session is still what it priced; otherwise none, and
    PreviewOrder prices the session as it is."""
    customer = checkout.customer
    checkout.state = CheckoutState(checkout.state._uow, checkout.state._engine)  # keeps no session: reads first
    started, _ = await checkout.start(customer, await checkout.cart_with("SKU-1"))
    read = await checkout.state.get(customer, started.session_id)
    await checkout.state.update(customer, started.session_id, StateUpdate(shipping_method="express"))
    engine = checkout.state._engine
    real_compute = engine.compute
    calls = 0

    async def as_read_before(*_args: object) -> Session:
        return read

    async def another_update_meanwhile(data: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:  # the fallback's pricing: the session changes under it (standard shipping)
            async with checkout.state._uow.single() as tx:
                await tx.sessions.update_state(started.session_id, {"shipping_method": "standard"}, None)
        return await real_compute(data)

    monkeypatch.setattr(update_state, "load_owned_session", as_read_before)
    monkeypatch.setattr(engine, "compute", another_update_meanwhile)
    await checkout.state.update(customer, started.session_id, StateUpdate(shipping_address=ADDRESS))
    monkeypatch.undo()

    stored = await checkout.state.get(customer, started.session_id)
    assert calls == 2 and stored.shipping_method == "standard" and stored.preview is None
    reuse = CheckoutState(checkout.state._uow, engine, reuse_seconds=30)
    shown = await reuse.preview(customer, started.session_id)  # nothing stored to reuse: priced as it is
    standard = await checkout.state.update(customer, started.session_id, StateUpdate(shipping_method="standard"))
    assert standard.preview is not None and shown.shipping_minor == standard.preview.shipping_minor
