"""Round trips per use case (issues 4 and 11), counted with SQLAlchemy's engine events on an engine of the
test's own: authorize and capture cost two autocommit statements each (the claim or PENDING row before the
provider call, then the outcome with its attempt row and outbox event in one statement), the webhook of an
outcome already applied one autocommit statement, a redelivered one a single statement too."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

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
from payment.adapter.sandbox_provider import SandboxProvider, provider_session
from payment.biz.authorize import AuthorizeCommand, AuthorizePayment
from payment.biz.capture import CapturePayment
from payment.biz.common import apply
from payment.biz.providers import Providers
from payment.biz.webhook import HandleWebhook, already_applied, nothing_to_do
from payment.data.repositories import SqlUnitOfWork
from payment.data.tables import attempts, outbox, payments, provider_events
from payment.model.payment import Attempt, Consumed, NewPayment, PaymentStatus, Transition, event_data
from payment.model.provider import EventKind, IntentRequest, IntentStatus, ProviderEvent, ProviderIntent

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
    async with provider_session(payment_settings.sandbox_url, 5.0) as client:
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
    # The PENDING row alone, then status + attempt row + outbox event in one statement: both autocommit.
    assert trips.take() == Trips(statements=2, autocommit=2)
    assert (await counted.authorize(cmd)).payment_id == payment.payment_id
    assert trips.take() == Trips(statements=2, autocommit=2)

    order_id = unique("order")
    captured = await counted.capture(payment.payment_id, order_id, None)
    assert captured.status == PaymentStatus.CAPTURED and captured.order_id == order_id
    # The claim alone (no read first), then status + attempt row + outbox event in one statement.
    assert trips.take() == Trips(statements=2, autocommit=2)
    again = await counted.capture(payment.payment_id, order_id, None)
    assert again.status == PaymentStatus.CAPTURED
    assert trips.take() == Trips(statements=2, autocommit=2)

    # The sandbox's webhooks for both arrive after the fact: nothing moves, so no transaction and no lock —
    # one statement reads the payment and whether the event was seen, and records it; a repeat is that one too.
    intent_id = payment.provider_payment_id
    assert intent_id is not None
    sent = [e for e in sandbox.api.events if e["data"]["object"]["id"] == intent_id]
    assert [e["type"] for e in sent] == ["payment_intent.amount_capturable_updated", "payment_intent.succeeded"]
    for event in sent:
        body, signature = webhook(payment_settings, event["id"], event["type"], event["data"]["object"])
        assert await counted.webhook("sandbox", body, signature) == (event["id"], False)
        assert trips.take() == Trips(statements=1, autocommit=1)
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
    # The payment and whether the event was seen, nothing recorded; then the claim with status + attempt row +
    # outbox event, in one statement: both autocommit, no transaction and no lock (it was 4 statements, a
    # transaction's claim, lock and update).
    assert trips.take() == Trips(statements=2, autocommit=2)
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


async def _outbox_payloads(engine: AsyncEngine, payment_id: uuid.UUID) -> dict[str, list[dict[str, Any]]]:
    found = await rows(
        engine,
        sa.select(outbox.c.event_id, outbox.c.subject, outbox.c.event_type, outbox.c.payload)
        .where(outbox.c.aggregate_id == str(payment_id))
        .order_by(outbox.c.created_at),
    )
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in found:
        # The envelope infra.outbox.add_event writes, with the row's own id, type and subject.
        assert r.payload["event_id"] == str(r.event_id) and r.payload["event_type"] == r.event_type
        assert r.payload["aggregate_id"] == str(payment_id) and r.payload["occurred_at"]
        assert r.subject == f"kassa.payment.{r.event_type}"
        by_type.setdefault(r.event_type, []).append(r.payload)
    return by_type


async def test_the_event_written_by_the_outcome_statement_is_the_payment_as_that_statement_left_it(
    counted: Counted,
) -> None:
    cmd = AuthorizeCommand(unique("pay"), unique("sess"), "cust-1", Money("USD", 1234), "tok_visa", "")
    authorized = await counted.authorize(cmd)
    captured = await counted.capture(authorized.payment_id, unique("order"), None)
    payloads = await _outbox_payloads(counted.engine, authorized.payment_id)
    assert payloads == {
        "PaymentAuthorized": [payloads["PaymentAuthorized"][0]],
        "PaymentCaptured": [payloads["PaymentCaptured"][0]],
    }
    assert payloads["PaymentAuthorized"][0]["data"] == event_data(authorized)
    amount = {"currency_code": "USD", "amount_minor": 1234}
    assert payloads["PaymentCaptured"][0]["data"] == event_data(captured, captured_amount=amount)
    assert payloads["PaymentCaptured"][0]["data"]["order_id"] == captured.order_id


async def test_a_transition_that_does_not_apply_writes_no_event_attempt_or_inbox_claim(counted: Counted) -> None:
    """The outcome statement's guard (status IN sources) holds for the rows its CTEs write as well."""
    cmd = AuthorizeCommand(unique("pay"), unique("sess"), "cust-1", Money("USD", 700), "tok_visa", "")
    payment = await counted.authorize(cmd)
    consumed = Consumed("payment-order-events", str(uuid.uuid4()))
    refused = Transition(
        PaymentStatus.AUTHORIZED,
        frozenset({PaymentStatus.PENDING}),
        {"provider_payment_id": "pi_other"},
        "PaymentAuthorized",
        {},
        Attempt("authorize", {}, {}, "authorized"),
        consumed=consumed,
    )
    logged = sa.select(attempts.c.attempt_id).where(attempts.c.payment_id == payment.payment_id)
    counted.trips.take()
    async with counted.uow.statement() as tx:
        assert await tx.payments.apply(payment.payment_id, refused) is None
    assert counted.trips.take() == Trips(statements=1, autocommit=1)
    assert [*await _outbox_payloads(counted.engine, payment.payment_id)] == ["PaymentAuthorized"]
    assert len((await _outbox_payloads(counted.engine, payment.payment_id))["PaymentAuthorized"]) == 1
    assert len(await rows(counted.engine, logged)) == 1
    async with counted.uow.read() as tx:
        assert not await tx.inbox.seen(consumed.consumer, consumed.event_id)
        again = await tx.payments.get(payment.payment_id)
    assert again == payment

    # The use cases' apply still logs the provider call a refused outcome carries (its webhook got there first),
    # by a statement of its own; nothing else.
    counted.trips.take()
    assert await apply(counted.uow, payment.payment_id, refused) is None
    assert counted.trips.take() == Trips(statements=2, autocommit=2)
    assert len(await rows(counted.engine, logged)) == 2
    assert len((await _outbox_payloads(counted.engine, payment.payment_id))["PaymentAuthorized"]) == 1
    async with counted.uow.read() as tx:
        assert not await tx.inbox.seen(consumed.consumer, consumed.event_id)

    # The same transition from the status the payment has applies, with its inbox claim, in one statement.
    applied = Transition(PaymentStatus.VOIDED, frozenset({PaymentStatus.AUTHORIZED}), consumed=consumed)
    counted.trips.take()
    done = await apply(counted.uow, payment.payment_id, applied)
    assert done is not None and done.status == PaymentStatus.VOIDED
    assert counted.trips.take() == Trips(statements=1, autocommit=1)
    async with counted.uow.read() as tx:
        assert await tx.inbox.seen(consumed.consumer, consumed.event_id)


def _intent(intent_id: str, status: IntentStatus, payment_id: uuid.UUID, refunded: int) -> ProviderIntent:
    metadata = {"payment_id": str(payment_id)}
    return ProviderIntent(intent_id, status, 1000, amount_received=1000, amount_refunded=refunded, metadata=metadata)


async def test_the_recording_statement_finds_nothing_to_do_exactly_when_the_rules_do(counted: Counted) -> None:
    """HandleWebhook's one statement decides in SQL (NothingToDo) what already_applied decides in Python: for every
    status, every kind of event, an intent held or another or none, amounts refunded or not, the two agree — so the
    short cut records an event only when it has nothing to apply or cancel, and a conflicting one goes the whole way.
    """
    uow = counted.uow
    kinds = {
        EventKind.AUTHORIZED: [IntentStatus.REQUIRES_CAPTURE, IntentStatus.REQUIRES_ACTION, IntentStatus.CANCELED],
        EventKind.FAILED: [IntentStatus.FAILED],
        EventKind.CAPTURED: [IntentStatus.SUCCEEDED],
        EventKind.CANCELED: [IntentStatus.CANCELED],
        EventKind.REFUNDED: [IntentStatus.SUCCEEDED],
        EventKind.OTHER: [IntentStatus.REQUIRES_CAPTURE],
    }
    checked = short_cut = 0
    for status in PaymentStatus:
        for held in ("none", "this", "other"):
            new = NewPayment(
                uuid.uuid4(), unique("pay"), unique("sess"), "c", Money("USD", 1000), "tok_visa", "sandbox", ""
            )
            this_intent = f"pi_{uuid.uuid4().hex}"
            async with uow.single() as tx:
                await tx.payments.create_or_get(new)
            held_id = {"none": None, "this": this_intent, "other": f"pi_{uuid.uuid4().hex}"}[held]
            async with counted.engine.begin() as conn:
                await conn.execute(
                    payments.update()
                    .where(payments.c.payment_id == new.payment_id)
                    .values(status=status.value, provider_payment_id=held_id, captured_minor=1000, refunded_minor=400)
                )
            for kind, intent_statuses in kinds.items():
                for intent_status in intent_statuses:
                    for refunded in (300, 400, 900) if kind == EventKind.REFUNDED else (0,):
                        intent = _intent(this_intent, intent_status, new.payment_id, refunded)
                        event = ProviderEvent(f"evt_{uuid.uuid4().hex}", kind, f"test.{kind.value}", intent)
                        async with uow.single() as tx:
                            found = await tx.provider_events.record_if_nothing_to_do(
                                "sandbox", event, new.payment_id, nothing_to_do(event)
                            )
                        assert found.payment is not None and found.payment.status == status
                        expected = already_applied(event, "sandbox", found.payment)
                        assert found.nothing_to_do == expected, (status, held, kind, intent_status, refunded)
                        assert found.recorded == expected and not found.seen
                        checked += 1
                        short_cut += expected
                        if expected:
                            # Recorded: a redelivery is seen, and records nothing.
                            async with uow.single() as tx:
                                again = await tx.provider_events.record_if_nothing_to_do(
                                    "sandbox", event, new.payment_id, nothing_to_do(event)
                                )
                            assert again.seen and not again.recorded
    assert checked > 300 and 0 < short_cut < checked


async def test_racing_deliveries_of_an_applied_outcome_are_recorded_once(
    counted: Counted, sandbox: RunningSandbox, payment_settings: Settings
) -> None:
    cmd = AuthorizeCommand(unique("pay"), unique("sess"), "cust-1", Money("USD", 4200), "tok_visa", "")
    payment = await counted.authorize(cmd)
    sent = [e for e in sandbox.api.events if e["data"]["object"]["id"] == payment.provider_payment_id]
    body, signature = webhook(payment_settings, sent[0]["id"], sent[0]["type"], sent[0]["data"]["object"])
    answers = await asyncio.gather(*(counted.webhook("sandbox", body, signature) for _ in range(4)))
    assert sorted(duplicate for _, duplicate in answers) == [False, True, True, True]
    claimed = await rows(counted.engine, sa.select(provider_events).where(provider_events.c.event_id == sent[0]["id"]))
    assert len(claimed) == 1


class EarlyWebhooks(SandboxProvider):
    """The sandbox, whose webhook for an outcome is handled before the API call that made it has answered."""

    def __init__(self, counted: Counted, sandbox: RunningSandbox, settings: Settings) -> None:
        super().__init__(counted.provider._client, settings.webhook_secret)
        self.sandbox, self.settings = sandbox, settings
        self.handle = HandleWebhook(counted.uow, {"sandbox": self})
        self.answers: list[tuple[str, bool]] = []

    async def deliver(self, intent_id: str, event_type: str) -> None:
        [event] = [
            e for e in self.sandbox.api.events if e["data"]["object"]["id"] == intent_id and e["type"] == event_type
        ]
        body, signature = webhook(self.settings, event["id"], event["type"], event["data"]["object"])
        self.answers.append(await self.handle("sandbox", body, signature))

    async def create_intent(self, request: IntentRequest, idempotency_key: str) -> ProviderIntent:
        intent = await super().create_intent(request, idempotency_key)
        await self.deliver(intent.intent_id, "payment_intent.amount_capturable_updated")
        return intent

    async def capture(
        self, intent_id: str, amount_minor: int, idempotency_key: str, metadata: Mapping[str, str] | None = None
    ) -> ProviderIntent:
        intent = await super().capture(intent_id, amount_minor, idempotency_key, metadata)
        await self.deliver(intent_id, "payment_intent.succeeded")
        return intent


async def test_webhooks_that_arrive_before_the_synchronous_answers_are_applied_once(
    counted: Counted, sandbox: RunningSandbox, payment_settings: Settings
) -> None:
    """The webhook of an authorization (and of a capture) is applied while the call that made it still awaits the
    provider's answer: the payment moves once, with one event each; the late answer changes nothing."""
    early = EarlyWebhooks(counted, sandbox, payment_settings)
    providers = Providers([early])
    cmd = AuthorizeCommand(unique("pay"), unique("sess"), "cust-1", Money("USD", 5100), "tok_visa", "")
    authorized = await AuthorizePayment(counted.uow, providers)(cmd)
    assert authorized.status == PaymentStatus.AUTHORIZED and authorized.provider_payment_id
    order_id = unique("order")
    captured = await CapturePayment(counted.uow, providers)(authorized.payment_id, order_id, None)
    assert captured.status == PaymentStatus.CAPTURED and captured.order_id == order_id
    assert captured.captured_minor == 5100
    # Both webhooks went the whole way (they moved the payment), neither as a duplicate.
    assert [duplicate for _, duplicate in early.answers] == [False, False]
    payloads = await _outbox_payloads(counted.engine, authorized.payment_id)
    assert {t: len(p) for t, p in payloads.items()} == {"PaymentAuthorized": 1, "PaymentCaptured": 1}
    assert payloads["PaymentCaptured"][0]["data"]["order_id"] == order_id
    logged = await rows(
        counted.engine,
        sa.select(attempts.c.operation, attempts.c.outcome)
        .where(attempts.c.payment_id == authorized.payment_id)
        .order_by(attempts.c.attempt_id),
    )
    # Each webhook logs what it applied, and each call the service made to the provider is logged too, though its
    # webhook moved the payment first (the e2e suite counts captures made at the provider by these rows).
    assert [tuple(r) for r in logged] == [
        ("webhook", "authorized"),
        ("authorize", "authorized"),
        ("webhook", "captured"),
        ("capture", "captured"),
    ]
    # Redelivered now, each is a duplicate.
    for event_id, _ in early.answers:
        [event] = [e for e in sandbox.api.events if e["id"] == event_id]
        body, signature = webhook(payment_settings, event["id"], event["type"], event["data"]["object"])
        assert await counted.webhook("sandbox", body, signature) == (event_id, True)


class Interleaved:
    """A unit of work whose first ``statement()`` runs ``between`` first: what another call (on another engine, not
    counted) commits between a webhook's first read and its write, as when the answer of the call that caused the
    webhook is applied while the webhook is under way."""

    def __init__(self, uow: SqlUnitOfWork, between: Callable[[], Awaitable[object]]) -> None:
        self._uow = uow
        self._between: Callable[[], Awaitable[object]] | None = between

    def __getattr__(self, name: str) -> Any:
        return getattr(self._uow, name)

    @contextlib.asynccontextmanager
    async def statement(self) -> AsyncIterator[Any]:
        if self._between is not None:
            between, self._between = self._between, None
            await between()
        async with self._uow.statement() as tx:
            yield tx


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def other_uow(payment_settings: Settings) -> AsyncIterator[SqlUnitOfWork]:
    assert payment_settings.database_url
    engine = create_engine(payment_settings.database_url, pool_size=1, application_name="kassa-payment-other-call")
    yield SqlUnitOfWork(engine)
    await engine.dispose()


def _sent(sandbox: RunningSandbox, intent_id: str, event_type: str) -> dict[str, Any]:
    [event] = [e for e in sandbox.api.events if e["data"]["object"]["id"] == intent_id and e["type"] == event_type]
    return event


async def _webhook_attempts(engine: AsyncEngine, payment_id: uuid.UUID) -> list[tuple[str, str]]:
    logged = await rows(
        engine,
        sa.select(attempts.c.operation, attempts.c.outcome)
        .where(attempts.c.payment_id == payment_id)
        .order_by(attempts.c.attempt_id),
    )
    return [(r.operation, r.outcome) for r in logged]


async def test_a_capture_webhook_that_finds_the_capture_in_flight_is_claimed_in_one_statement(
    counted: Counted, other_uow: SqlUnitOfWork, sandbox: RunningSandbox, payment_settings: Settings
) -> None:
    """The capture's webhook reads the payment still CAPTURING (something to apply); before it writes, the capture's
    own answer is applied. The webhook's one statement claims the event and, the guard refusing, applies nothing:
    two autocommit statements where it took five round trips (read; BEGIN, claim, lock, COMMIT). The payment is
    captured once, with one event, and a redelivery is a duplicate."""
    cmd = AuthorizeCommand(unique("pay"), unique("sess"), "cust-1", Money("USD", 3100), "tok_visa", "")
    payment = await counted.authorize(cmd)
    assert payment.provider_payment_id is not None
    order_id, pid = unique("order"), payment.payment_id
    claim = Transition(
        PaymentStatus.CAPTURING, frozenset({PaymentStatus.AUTHORIZED}), {"order_id": order_id}, lease_seconds=30
    )
    assert await apply(other_uow, pid, claim) is not None
    intent = await counted.provider.capture(
        payment.provider_payment_id, 3100, f"capture-{pid}", {"kassa_order_id": order_id}
    )
    answer = Transition(
        PaymentStatus.CAPTURED,
        frozenset({PaymentStatus.CAPTURING}),
        {"captured_minor": intent.amount_received},
        "PaymentCaptured",
        {"captured_amount": {"currency_code": "USD", "amount_minor": intent.amount_received}},
        Attempt("capture", {}, {"intent_id": intent.intent_id, "status": intent.status.value}, "captured"),
    )
    event = _sent(sandbox, payment.provider_payment_id, "payment_intent.succeeded")
    body, signature = webhook(payment_settings, event["id"], event["type"], event["data"]["object"])
    handle = HandleWebhook(Interleaved(counted.uow, lambda: apply(other_uow, pid, answer)), counted.providers)  # type: ignore[arg-type]
    counted.trips.take()

    assert await handle("sandbox", body, signature) == (event["id"], False)
    assert counted.trips.take() == Trips(statements=2, autocommit=2)

    async with counted.uow.read() as tx:
        captured = await tx.payments.get(pid)
    assert captured is not None and captured.status == PaymentStatus.CAPTURED and captured.captured_minor == 3100
    payloads = await _outbox_payloads(counted.engine, pid)
    assert {t: len(p) for t, p in payloads.items()} == {"PaymentAuthorized": 1, "PaymentCaptured": 1}
    # The capture's answer moved it; the webhook, claimed, logged nothing.
    assert await _webhook_attempts(counted.engine, pid) == [("authorize", "authorized"), ("capture", "captured")]
    claimed = await rows(
        counted.engine, sa.select(provider_events.c.payment_id).where(provider_events.c.event_id == event["id"])
    )
    assert [r.payment_id for r in claimed] == [pid]
    counted.trips.take()
    assert await counted.webhook("sandbox", body, signature) == (event["id"], True)
    assert counted.trips.take() == Trips(statements=1, autocommit=1)


async def _pending_with_intent(counted: Counted, amount: int) -> tuple[uuid.UUID, ProviderIntent]:
    """A PENDING payment whose intent the provider has created and not yet answered (as AuthorizePayment leaves it
    while it awaits the answer)."""
    new = NewPayment(
        uuid.uuid4(), unique("pay"), unique("sess"), "cust-1", Money("USD", amount), "tok_visa", "sandbox", ""
    )
    async with counted.uow.single() as tx:
        payment, created = await tx.payments.create_or_get(new)
    assert created
    request = IntentRequest(
        amount, "USD", "tok_visa", "", {"payment_id": str(payment.payment_id), "order_ref": payment.order_ref}
    )
    return payment.payment_id, await counted.provider.create_intent(request, payment.idempotency_key)


async def test_an_authorization_webhook_that_finds_its_answer_applied_meanwhile_claims_and_reads(
    counted: Counted, other_uow: SqlUnitOfWork, sandbox: RunningSandbox, payment_settings: Settings
) -> None:
    """The authorization's webhook reads the payment PENDING; the authorization's answer is applied before the webhook
    writes. Its statement claims the event and applies nothing; then it reads the payment to tell whether the intent
    is an orphan (it is not): three autocommit statements, no transaction, nothing cancelled."""
    pid, intent = await _pending_with_intent(counted, 2200)
    answer = Transition(
        PaymentStatus.AUTHORIZED,
        frozenset({PaymentStatus.PENDING}),
        {"provider_payment_id": intent.intent_id},
        "PaymentAuthorized",
        {},
        Attempt("authorize", {}, {"intent_id": intent.intent_id}, "authorized"),
    )
    event = _sent(sandbox, intent.intent_id, "payment_intent.amount_capturable_updated")
    body, signature = webhook(payment_settings, event["id"], event["type"], event["data"]["object"])
    handle = HandleWebhook(Interleaved(counted.uow, lambda: apply(other_uow, pid, answer)), counted.providers)  # type: ignore[arg-type]
    counted.trips.take()

    assert await handle("sandbox", body, signature) == (event["id"], False)
    assert counted.trips.take() == Trips(statements=3, autocommit=3)
    assert {t: len(p) for t, p in (await _outbox_payloads(counted.engine, pid)).items()} == {"PaymentAuthorized": 1}
    assert await _webhook_attempts(counted.engine, pid) == [("authorize", "authorized")]
    assert (await counted.provider.get_intent(intent.intent_id)).status == IntentStatus.REQUIRES_CAPTURE


async def test_an_authorization_webhook_for_a_payment_voided_meanwhile_cancels_the_intent(
    counted: Counted, other_uow: SqlUnitOfWork, sandbox: RunningSandbox, payment_settings: Settings
) -> None:
    """Invariant 3 on the one-statement path: a void lands between the webhook's read and its write. The webhook's
    authorization does not apply (the payment is VOIDED), and the intent the provider holds is cancelled at once."""
    pid, intent = await _pending_with_intent(counted, 2300)
    void = Transition(PaymentStatus.VOIDED, frozenset({PaymentStatus.PENDING}), {}, "PaymentVoided", {"reason": "test"})
    event = _sent(sandbox, intent.intent_id, "payment_intent.amount_capturable_updated")
    body, signature = webhook(payment_settings, event["id"], event["type"], event["data"]["object"])
    handle = HandleWebhook(Interleaved(counted.uow, lambda: apply(other_uow, pid, void)), counted.providers)  # type: ignore[arg-type]

    assert await handle("sandbox", body, signature) == (event["id"], False)
    async with counted.uow.read() as tx:
        voided = await tx.payments.get(pid)
    assert voided is not None and voided.status == PaymentStatus.VOIDED
    assert (await counted.provider.get_intent(intent.intent_id)).status == IntentStatus.CANCELED
    assert await _webhook_attempts(counted.engine, pid) == [("void", "orphan_canceled")]
    assert {t: len(p) for t, p in (await _outbox_payloads(counted.engine, pid)).items()} == {"PaymentVoided": 1}
