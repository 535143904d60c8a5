"""Checkout's consumer of payment events on real JetStream and Postgres (issue 11): deliveries and reads per checkout.

The saga runs on the real SQL unit of work with fake neighbours and is held right before one of its calls, so the
payment events (published as payment's outbox publishes them, to a NATS server of the test's own) reach the real
``checkout-payments`` consumer while the session is CONFIRMING, as they usually do on the mesh. The consumer's use
case has an engine of its own, so every statement counted on it is the consumer's.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from helpers import RoundTrips, Trips, drained, private_nats, unique

from checkout.biz.cart.manage import CartUseCases
from checkout.biz.checkout.compensations import Compensator
from checkout.biz.checkout.complete_payment import NotYet, PaymentCompletion
from checkout.biz.checkout.confirm import ConfirmCheckout
from checkout.biz.checkout.expiry import SessionExpiry
from checkout.biz.checkout.pricing_engine import PricingEngine
from checkout.biz.checkout.settle import Settlement
from checkout.biz.checkout.start import StartCheckout
from checkout.biz.checkout.update_state import CheckoutState, StateUpdate
from checkout.biz.policy import CheckoutPolicy
from checkout.biz.ports import Gateways, SessionPayment
from checkout.data.repositories import SqlUnitOfWork
from checkout.model.catalog import Address, AuthorizeRequest, OrderStatus, PaymentStatus
from checkout.model.session import ConfirmResult, SagaState, SagaStep, Session, SessionStatus
from checkout.worker.payment_events import payment_event_consumer
from infra import events
from infra.config import Settings
from infra.db import create_engine
from infra.events import connect, ensure_streams, subject
from kernel.caller import Caller
from kernel.money import Money
from tests.checkout.fakes import FakeIdempotencyStore, fake_gateways
from tests.checkout.sessions import begin_confirm, hold_before, new_session

pytestmark = pytest.mark.integration

ADDRESS = Address("Ada Lovelace", "12 Analytical St", "", "London", "", "N1 9GU", "GB", "")
DURABLE = "checkout-payments"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engines(settings: Settings) -> AsyncIterator[tuple[SqlUnitOfWork, SqlUnitOfWork, RoundTrips]]:
    """The saga's unit of work, and the consumer's on an engine of its own with its statements counted."""
    assert settings.database_url
    saga = create_engine(settings.database_url, pool_size=2, application_name="kassa-checkout-payevents-saga")
    consumer = create_engine(settings.database_url, pool_size=2, application_name="kassa-checkout-payevents")
    cipher = settings.pii_cipher()
    yield SqlUnitOfWork(saga, cipher), SqlUnitOfWork(consumer, cipher), RoundTrips(consumer)
    await saga.dispose()
    await consumer.dispose()


class CountingCompletion:
    """PaymentCompletion as the consumer sees it, recording every delivery and what it answered."""

    def __init__(self, completion: PaymentCompletion) -> None:
        self._completion = completion
        self.deliveries: list[tuple[PaymentStatus, str]] = []

    async def on_payment(self, session_id: str, payment_id: str, status: PaymentStatus, **kwargs: Any) -> str:
        try:
            outcome = await self._completion.on_payment(session_id, payment_id, status, **kwargs)
        except NotYet:
            self.deliveries.append((status, "NotYet"))
            raise
        self.deliveries.append((status, outcome))
        return outcome


@dataclass
class Mesh:
    """The use cases, the consumer running on its own NATS, and what it was sent."""

    gateways: Gateways
    uow: SqlUnitOfWork
    carts: CartUseCases
    start: StartCheckout
    state: CheckoutState
    confirm: ConfirmCheckout
    counting: CountingCompletion
    trips: RoundTrips
    js: Any
    customer: Caller

    async def filled_in_session(self, payment_method: str) -> Session:
        self.gateways.pricing.add("SKU-1", 1000)  # type: ignore[attr-defined]
        self.gateways.inventory.stock["SKU-1"] = 10  # type: ignore[attr-defined]
        cart = await self.carts.create(self.customer, "USD")
        await self.carts.add_item(self.customer, cart.cart_id, "SKU-1", 2)
        session, _ = await self.start(self.customer, cart.cart_id)
        update = StateUpdate(
            email="ada@example.com", shipping_address=ADDRESS, shipping_method="standard", payment_method=payment_method
        )
        return await self.state.update(self.customer, session.session_id, update)

    async def publish(self, event_type: str, data: dict[str, Any]) -> None:
        """As payment's outbox does: the envelope, on kassa.payment.<type>, deduplicated by its id."""
        event_id = str(uuid.uuid4())
        envelope = {"event_id": event_id, "event_type": event_type, "aggregate_id": data["payment_id"], "data": data}
        await self.js.publish(
            subject("payment", event_type), json.dumps(envelope).encode(), headers={"Nats-Msg-Id": event_id}
        )

    async def stored(self, session_id: str) -> Session:
        async with self.uow.read() as tx:
            session = await tx.sessions.get(session_id)
        assert session is not None
        return session

    def reads(self) -> Counter[str]:
        """The consumer's statements since the last call: whole-session reads and narrow ones."""
        sent = self.trips.sent
        self.trips.take()
        return Counter(_kind(sql) for sql, _ in sent)


def _kind(sql: str) -> str:
    if not sql.startswith("SELECT"):
        return sql.split(maxsplit=1)[0].lower()  # a write (the claim of an awaited payment, the saga's)
    if "checkout_sessions.lines" in sql:
        return "whole session"
    return "narrow" if "->>" in sql else sql


async def _until(check: Callable[[], Any], what: str, seconds: float = 20.0) -> None:
    for _ in range(int(seconds / 0.05)):
        done = check()
        if await done if inspect.isawaitable(done) else done:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not {what} after {seconds}s")


@pytest_asyncio.fixture(loop_scope="session")
async def mesh(engines: tuple[SqlUnitOfWork, SqlUnitOfWork, RoundTrips]) -> AsyncIterator[Mesh]:
    uow, consumer_uow, trips = engines
    gateways = fake_gateways()
    policy = CheckoutPolicy()
    engine = PricingEngine(gateways.pricing, gateways.promotion, policy.pricing_deadline_seconds)
    compensator = Compensator(uow, gateways, policy.retry)
    settlement = Settlement(uow, gateways, compensator, policy)
    consumer_compensator = Compensator(consumer_uow, gateways, policy.retry)
    completion = PaymentCompletion(
        consumer_uow,
        gateways,
        Settlement(consumer_uow, gateways, consumer_compensator, policy),
        consumer_compensator,
        policy,
    )
    counting = CountingCompletion(completion)
    with private_nats() as server:
        nc = js = None
        for _ in range(100):  # until the server listens
            with contextlib.suppress(Exception):
                nc, js = await connect(server.url, "checkout-payment-events-tests")
                break
            await asyncio.sleep(0.05)
        assert nc is not None and js is not None
        await ensure_streams(js, ["payment"])
        consumer = payment_event_consumer(js, counting)  # type: ignore[arg-type]
        task = asyncio.create_task(consumer.run())
        try:
            trips.take()
            yield Mesh(
                gateways=gateways,
                uow=uow,
                carts=CartUseCases(uow, gateways.pricing, policy),
                start=StartCheckout(uow, gateways, policy, compensator, SessionExpiry(uow, compensator)),
                state=CheckoutState(uow, engine),
                confirm=ConfirmCheckout(
                    uow, gateways, engine, FakeIdempotencyStore(), compensator, settlement=settlement, policy=policy
                ),
                counting=counting,
                trips=trips,
                js=js,
                customer=Caller(unique("cust")),
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await nc.close()


async def _paused(
    mesh: Mesh, session: Session, gateway: Any, method: str
) -> tuple[asyncio.Task[ConfirmResult], asyncio.Event]:
    """ConfirmCheckout running, held right before ``gateway.method``; set the event to let it go."""
    reached, release = hold_before(gateway, method)
    assert session.preview is not None
    task = asyncio.ensure_future(
        mesh.confirm(mesh.customer, session.session_id, unique("key"), session.preview.grand_total)
    )
    await asyncio.wait_for(reached.wait(), 10)
    return task, release


def _data(session_id: str, payment_id: str, status: PaymentStatus, order_id: str = "") -> dict[str, Any]:
    return {"payment_id": payment_id, "order_ref": session_id, "order_id": order_id, "status": status.value}


async def test_a_plain_card_checkout_costs_one_delivery_and_one_narrow_read_per_payment_event(mesh: Mesh) -> None:
    """Before: each of the two events was nak'ed while the saga ran and read whole again after it (4 deliveries,
    4 whole-session reads, 2 naks). Now: 2 deliveries, 2 narrow reads, no nak; the checkout ends the same."""
    session = await mesh.filled_in_session("tok_visa")
    sid = session.session_id
    task, release = await _paused(mesh, session, mesh.gateways.order, "record_payment")  # captured, telling the order
    pid = (await mesh.stored(sid)).saga_state.payment_id
    order_id = mesh.gateways.order.orders[sid]["order_id"]  # type: ignore[attr-defined]
    mesh.reads()

    await mesh.publish("PaymentAuthorized", _data(sid, pid, PaymentStatus.AUTHORIZED))
    await mesh.publish("PaymentCaptured", _data(sid, pid, PaymentStatus.CAPTURED, order_id))
    await _until(lambda: len(mesh.counting.deliveries) >= 2, "delivered")
    release.set()
    result = await task
    await _until(lambda: drained(mesh.js, DURABLE, events.STREAMS["payment"]), "acknowledged")

    assert (result.order_status, result.payment_status) == (OrderStatus.CONFIRMED, PaymentStatus.CAPTURED)
    deliveries = mesh.counting.deliveries
    counts = {
        "deliveries": len(deliveries),
        "naks": sum(1 for _, outcome in deliveries if outcome == "NotYet"),
        "reads": dict(mesh.reads()),
    }
    assert counts == {"deliveries": 2, "naks": 0, "reads": {"narrow": 2}}, deliveries
    assert deliveries == [
        (PaymentStatus.AUTHORIZED, "the saga holds it"),
        (PaymentStatus.CAPTURED, "the saga holds it"),
    ]
    assert (await mesh.stored(sid)).status is SessionStatus.COMPLETED
    payment = mesh.gateways.payment.payments[pid]  # type: ignore[attr-defined]
    assert (payment["status"], payment["captures"]) == (PaymentStatus.CAPTURED, 1)


async def test_a_three_d_secure_authorization_still_waits_for_the_saga_and_then_completes(mesh: Mesh) -> None:
    """The event 3-D Secure waits for, arriving before ConfirmCheckout answered: redelivered after the saga ended
    awaiting payment, it completes the checkout (the whole session read once, to settle it)."""
    session = await mesh.filled_in_session("tok_threeDSecure")
    sid = session.session_id
    task, release = await _paused(mesh, session, mesh.gateways.inventory, "extend_reservations")  # step 8
    pid = (await mesh.stored(sid)).saga_state.payment_id
    mesh.gateways.payment.complete_action(pid)  # type: ignore[attr-defined]
    mesh.reads()

    await mesh.publish("PaymentAuthorized", _data(sid, pid, PaymentStatus.AUTHORIZED))
    await _until(lambda: len(mesh.counting.deliveries) >= 1, "delivered")
    release.set()
    assert (await task).order_status == OrderStatus.PENDING_PAYMENT
    await _until(lambda: drained(mesh.js, DURABLE, events.STREAMS["payment"]), "acknowledged")

    assert mesh.counting.deliveries == [
        (PaymentStatus.AUTHORIZED, "NotYet"),
        (PaymentStatus.AUTHORIZED, f"order {OrderStatus.CONFIRMED}"),
    ]
    reads = mesh.reads()
    assert (reads["narrow"], reads["whole session"]) == (2, 1), reads
    assert (await mesh.stored(sid)).status is SessionStatus.COMPLETED
    assert mesh.gateways.payment.payments[pid]["captures"] == 1  # type: ignore[attr-defined]


async def test_the_narrow_read_is_one_statement_and_says_what_the_whole_read_says(engines) -> None:
    _saga_uow, uow, trips = engines
    async with uow.transaction() as tx:
        session = await new_session(tx, ADDRESS)
        started = await begin_confirm(tx, session.session_id, unique("k"), "fp")
    assert started is not None
    sid, attempt = session.session_id, started.saga_attempt
    authorize = AuthorizeRequest(
        "checkout:x:authorize", sid, Money("USD", 1000), "tok_visa", session.customer_id, "a@b.c"
    )

    async def both() -> tuple[SessionPayment | None, Session | None]:
        trips.take()
        async with uow.read() as tx:
            seen = await tx.sessions.get_payment(sid)
        assert trips.take() == Trips(statements=1, autocommit=1)
        async with uow.read() as tx:
            return seen, await tx.sessions.get(sid)

    seen, whole = await both()
    assert seen == SessionPayment(SessionStatus.CONFIRMING, whole.saga_step, "", None)
    state = SagaState(authorize=authorize, payment_id="pay-1", payment_status=PaymentStatus.AUTHORIZED)
    async with uow.single() as tx:
        assert await tx.sessions.save_progress(sid, SagaStep.CREATE_ORDER, state, attempt=attempt)
    seen, whole = await both()
    assert seen == SessionPayment(SessionStatus.CONFIRMING, SagaStep.CREATE_ORDER, "pay-1", PaymentStatus.AUTHORIZED)
    assert (whole.saga_state.payment_id, whole.saga_state.payment_status) == ("pay-1", PaymentStatus.AUTHORIZED)
    async with uow.single() as tx:
        assert await tx.sessions.finish(
            sid, SessionStatus.CANCELLED, step=SagaStep.COMPENSATING, state=state, attempt=attempt
        )
    seen, _ = await both()
    assert seen == SessionPayment(SessionStatus.CANCELLED, SagaStep.COMPENSATING, "pay-1", PaymentStatus.AUTHORIZED)
    async with uow.read() as tx:
        assert await tx.sessions.get_payment(str(uuid.uuid4())) is None
