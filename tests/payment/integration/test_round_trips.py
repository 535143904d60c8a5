"""Round trips per use case (issue 4), counted with SQLAlchemy's engine events on an engine of the
test's own: authorize and capture cost one transaction (plus one autocommit statement) each, a
provider webhook one transaction of two statements, a redelivered one a single statement."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import sqlalchemy as sa
from helpers import RoundTrips, Trips, unique
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.sandbox.server import RunningSandbox
from infra.config import Settings
from infra.db import create_engine
from infra.webhook_signature import sign
from kernel.money import Money
from payment.adapter.sandbox_provider import SandboxProvider
from payment.biz.authorize import AuthorizeCommand, AuthorizePayment
from payment.biz.capture import CapturePayment
from payment.biz.providers import Providers
from payment.biz.webhook import HandleWebhook
from payment.data.repositories import SqlUnitOfWork
from payment.data.tables import attempts, outbox, provider_events
from payment.model.payment import NewPayment, PaymentStatus

pytestmark = pytest.mark.integration


class Counted:
    def __init__(self, engine: AsyncEngine, provider: SandboxProvider) -> None:
        self.engine = engine
        self.uow = SqlUnitOfWork(engine)
        self.provider = provider
        self.providers = Providers([provider])
        self.authorize = AuthorizePayment(self.uow, self.providers)
        self.capture = CapturePayment(self.uow, self.providers)
        self.webhook = HandleWebhook(self.uow, self.providers)
        self.trips = RoundTrips(engine)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def counted(payment_settings: Settings) -> AsyncIterator[Counted]:
    assert payment_settings.database_url
    engine = create_engine(payment_settings.database_url, pool_size=2, application_name="kassa-payment-round-trips")
    async with httpx.AsyncClient(base_url=payment_settings.sandbox_url, timeout=5.0) as client:
        yield Counted(engine, SandboxProvider(client, payment_settings.webhook_secret))
    await engine.dispose()


async def rows(engine: AsyncEngine, stmt: sa.Select[Any]) -> list[sa.Row[Any]]:
    async with engine.connect() as conn:
        return list((await conn.execute(stmt)).all())


def webhook(settings: Settings, event_id: str, event_type: str, intent: dict[str, Any]) -> tuple[bytes, str]:
    body = json.dumps({"id": event_id, "object": "event", "type": event_type, "data": {"object": intent}}).encode()
    return body, sign(settings.webhook_secret, body)


async def test_authorize_capture_and_their_webhooks(
    counted: Counted, sandbox: RunningSandbox, payment_settings: Settings
) -> None:
    trips = counted.trips
    cmd = AuthorizeCommand(unique("pay"), unique("sess"), "cust-1", Money("USD", 4200), "tok_visa", "")
    trips.take()

    payment = await counted.authorize(cmd)
    assert payment.status == PaymentStatus.AUTHORIZED
    # The PENDING row alone (autocommit), then status + attempt row and the outbox event in one transaction.
    assert trips.take() == Trips(statements=3, autocommit=1, transactions=1, commits=1)
    assert (await counted.authorize(cmd)).payment_id == payment.payment_id
    assert trips.take() == Trips(statements=2, autocommit=2)

    order_id = unique("order")
    captured = await counted.capture(payment.payment_id, order_id, None)
    assert captured.status == PaymentStatus.CAPTURED and captured.order_id == order_id
    # The claim alone (autocommit, no read first), then status + attempt row and the outbox event.
    assert trips.take() == Trips(statements=3, autocommit=1, transactions=1, commits=1)
    again = await counted.capture(payment.payment_id, order_id, None)
    assert again.status == PaymentStatus.CAPTURED
    assert trips.take() == Trips(statements=2, autocommit=2)

    # The sandbox's webhooks for both arrive after the fact: nothing moves, so no transaction and no lock —
    # one read (the payment, and whether the event was seen), then the event recorded; a repeat is one read.
    intent_id = payment.provider_payment_id
    assert intent_id is not None
    sent = [e for e in sandbox.api.events if e["data"]["object"]["id"] == intent_id]
    assert [e["type"] for e in sent] == ["payment_intent.amount_capturable_updated", "payment_intent.succeeded"]
    for event in sent:
        body, signature = webhook(payment_settings, event["id"], event["type"], event["data"]["object"])
        assert await counted.webhook("sandbox", body, signature) == (event["id"], False)
        assert trips.take() == Trips(statements=2, autocommit=2)
        assert await counted.webhook("sandbox", body, signature) == (event["id"], True)
        assert trips.take() == Trips(statements=1, autocommit=1)

    claimed = await rows(
        counted.engine,
        sa.select(provider_events.c.payment_id).where(provider_events.c.event_id.in_([e["id"] for e in sent])),
    )
    assert [r.payment_id for r in claimed] == [payment.payment_id, payment.payment_id]
    logged = await rows(
        counted.engine,
        sa.select(attempts.c.operation, attempts.c.outcome)
        .where(attempts.c.payment_id == payment.payment_id)
        .order_by(attempts.c.attempt_id),
    )
    assert [tuple(r) for r in logged] == [("authorize", "authorized"), ("capture", "captured")]
    events = await rows(
        counted.engine, sa.select(outbox.c.event_type).where(outbox.c.aggregate_id == str(payment.payment_id))
    )
    assert sorted(r.event_type for r in events) == ["PaymentAuthorized", "PaymentCaptured"]


async def test_a_webhook_that_overtakes_the_authorization_finds_the_payment_by_its_metadata(
    counted: Counted, payment_settings: Settings
) -> None:
    """The provider's notice can arrive before the authorization stored the intent id."""
    uow, trips = counted.uow, counted.trips
    new = NewPayment(
        uuid.uuid4(), unique("pay"), unique("sess"), "cust-1", Money("USD", 900), "tok_visa", "sandbox", ""
    )
    async with uow.single() as tx:
        payment, created = await tx.payments.create_or_get(new)
    assert created and payment.status == PaymentStatus.PENDING and payment.provider_payment_id is None
    intent = {"id": f"pi_{uuid.uuid4().hex}", "object": "payment_intent", "status": "requires_capture",
              "amount": 900, "amount_capturable": 900, "metadata": {"payment_id": str(payment.payment_id)}}  # fmt: skip
    event_id = f"evt_{uuid.uuid4().hex}"
    body, signature = webhook(payment_settings, event_id, "payment_intent.amount_capturable_updated", intent)
    trips.take()

    handle = HandleWebhook(uow, {counted.provider.name: counted.provider})
    assert await handle("sandbox", body, signature) == (event_id, False)
    # The payment and whether the event was seen (autocommit); then claim, lock, status + attempt row and
    # the outbox event.
    assert trips.take() == Trips(statements=5, autocommit=1, transactions=1, commits=1)
    async with uow.read() as tx:
        authorized = await tx.payments.get(payment.payment_id)
    assert authorized is not None
    assert authorized.status == PaymentStatus.AUTHORIZED and authorized.provider_payment_id == intent["id"]
    claimed = await rows(
        counted.engine, sa.select(provider_events.c.payment_id).where(provider_events.c.event_id == event_id)
    )
    assert [r.payment_id for r in claimed] == [payment.payment_id]

    # An event for no payment of ours is recorded (deduplicated) and changes nothing.
    stray_id = f"evt_{uuid.uuid4().hex}"
    stray = {**intent, "id": f"pi_{uuid.uuid4().hex}", "metadata": {}}
    body, signature = webhook(payment_settings, stray_id, "payment_intent.succeeded", stray)
    assert await handle("sandbox", body, signature) == (stray_id, False)
    assert await handle("sandbox", body, signature) == (stray_id, True)
    claimed = await rows(
        counted.engine, sa.select(provider_events.c.payment_id).where(provider_events.c.event_id == stray_id)
    )
    assert [r.payment_id for r in claimed] == [None]
