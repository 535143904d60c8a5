"""The payment sweeper finishes what a failure in mid-operation left and nobody retried: a void left VOIDING
by a provider outage, a capture left CAPTURING, a refund left PENDING, an authorization left PENDING. Time
passing is simulated by moving the rows' timestamps back; the provider is the real sandbox over HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
import pytest_asyncio
import sqlalchemy as sa
from helpers import bearer, unique
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.sandbox.server import RunningSandbox
from infra import faults
from infra.config import ConfigError, Settings
from infra.grpc_errors import error_info
from infra.runner import running_service
from kassa.common.v1 import money_pb2
from kassa.payment.v1 import payment_pb2, payment_service_pb2
from kassa.payment.v1.payment_service_pb2_grpc import PaymentServiceStub
from kernel.money import Money
from payment.adapter.sandbox_provider import SandboxProvider, provider_session
from payment.biz.providers import Providers
from payment.biz.sweep import SweepPolicy, SweepReport, SweepStuckPayments
from payment.bootstrap import Sweeper, bootstrap, sweeper_settings
from payment.data.repositories import SqlUnitOfWork
from payment.data.tables import outbox, payments, refunds
from payment.model.payment import NewPayment, Payment, PaymentStatus

pytestmark = pytest.mark.integration

PS = payment_pb2.PaymentStatus
pb = payment_service_pb2
TIMEOUT = 20
POLICY = SweepPolicy(stuck_seconds=600, abandoned_seconds=1800)
# Further back than both thresholds.
LONG_AGO = timedelta(hours=2)


class Client:
    def __init__(self, stub: PaymentServiceStub, token: str) -> None:
        self.stub = stub
        self.md = bearer(token)

    async def call(self, rpc: Any, request: Any) -> Any:
        return await rpc(request, metadata=self.md, timeout=TIMEOUT)

    async def authorize(self, request: pb.AuthorizePaymentRequest | None = None) -> payment_pb2.Payment:
        return (await self.call(self.stub.AuthorizePayment, request or _authorize_request())).payment

    async def capture(self, payment_id: str, order_id: str) -> payment_pb2.Payment:
        request = pb.CapturePaymentRequest(payment_id=payment_id, order_id=order_id)
        return (await self.call(self.stub.CapturePayment, request)).payment


@pytest.fixture
def client(payment_stub: PaymentServiceStub, service_token: str) -> Client:
    return Client(payment_stub, service_token)


@pytest_asyncio.fixture(loop_scope="session")
async def providers(sandbox: RunningSandbox, settings: Settings) -> AsyncIterator[Providers]:
    async with provider_session(sandbox.url, 5) as http:
        yield Providers([SandboxProvider(http, settings.webhook_secret)])


@dataclasses.dataclass(frozen=True)
class World:
    """What a sweep works on: payment's database and the provider, and the sandbox's ledger to check."""

    uow: SqlUnitOfWork
    providers: Providers
    sandbox: RunningSandbox
    db: AsyncEngine

    async def sweep(self) -> SweepReport:
        return await SweepStuckPayments(self.uow, self.providers, POLICY)()


@pytest.fixture
def world(payment_db: AsyncEngine, providers: Providers, sandbox: RunningSandbox) -> World:
    return World(SqlUnitOfWork(payment_db), providers, sandbox, payment_db)


@pytest.fixture
def uow(payment_db: AsyncEngine) -> SqlUnitOfWork:
    return SqlUnitOfWork(payment_db)


def _authorize_request(token: str = "tok_visa") -> pb.AuthorizePaymentRequest:
    return pb.AuthorizePaymentRequest(
        idempotency_key=unique("pay"),
        order_ref=unique("sess"),
        amount=money_pb2.Money(currency_code="USD", amount_minor=800),
        payment_method=token,
        customer_id="cust-1",
    )


async def _fails(call: Any) -> dict[str, str]:
    """The call fails UNAVAILABLE; its ErrorInfo metadata."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
    info = error_info(err.value)
    assert info is not None
    return dict(info.metadata)


async def _time_passes(db: AsyncEngine, payment_id: str | uuid.UUID, *, lease_too: bool = True) -> None:
    """The payment (and its refunds) were last touched long ago; with ``lease_too`` its claim ran out too."""
    pid = uuid.UUID(str(payment_id))
    values: dict[str, Any] = {"updated_at": payments.c.updated_at - LONG_AGO}
    if lease_too:
        values["lease_until"] = sa.case(
            (payments.c.lease_until.is_(None), None), else_=sa.func.now() - timedelta(seconds=1)
        )
    async with db.begin() as conn:
        await conn.execute(payments.update().where(payments.c.payment_id == pid).values(values))
        await conn.execute(
            refunds.update().where(refunds.c.payment_id == pid).values(created_at=refunds.c.created_at - LONG_AGO)
        )


async def _get(uow: SqlUnitOfWork, payment_id: str | uuid.UUID) -> Payment | None:
    async with uow.read() as tx:
        return await tx.payments.get(uuid.UUID(str(payment_id)))


async def _status(uow: SqlUnitOfWork, payment_id: str | uuid.UUID) -> PaymentStatus:
    payment = await _get(uow, payment_id)
    assert payment is not None
    return payment.status


async def _event_types(db: AsyncEngine, payment_id: str) -> list[str]:
    async with db.connect() as conn:
        rows = await conn.execute(
            sa.select(outbox.c.event_type).where(outbox.c.aggregate_id == payment_id).order_by(outbox.c.created_at)
        )
        return [r.event_type for r in rows]


async def test_a_void_left_voiding_by_a_provider_outage_is_finished(client: Client, world: World) -> None:
    uow, sandbox, payment_db = world.uow, world.sandbox, world.db
    payment = await client.authorize()
    faults.configure("sandbox.void=error")
    void = pb.VoidAuthorizationRequest(payment_id=payment.payment_id, reason="checkout failed")
    await _fails(client.call(client.stub.VoidAuthorization, void))
    faults.configure(None)
    assert await _status(uow, payment.payment_id) == PaymentStatus.VOIDING
    assert sandbox.api.state.intents[payment.provider_payment_id].status == "requires_capture"  # still held

    # Not yet: its claim is still live.
    await world.sweep()
    assert await _status(uow, payment.payment_id) == PaymentStatus.VOIDING

    await _time_passes(payment_db, payment.payment_id)
    report = await world.sweep()
    assert report.outcomes["void: VOIDED"] >= 1
    assert await _status(uow, payment.payment_id) == PaymentStatus.VOIDED
    assert sandbox.api.state.intents[payment.provider_payment_id].status == "canceled"
    assert await _event_types(payment_db, payment.payment_id) == ["PaymentAuthorized", "PaymentVoided"]


async def test_a_capture_the_provider_made_but_nobody_recorded_is_recorded_once(client: Client, world: World) -> None:
    uow, sandbox, payment_db = world.uow, world.sandbox, world.db
    payment = await client.authorize()
    order_id = unique("order")
    faults.configure("payment.capture.after_provider=error#1")
    await _fails(client.capture(payment.payment_id, order_id))
    await _time_passes(payment_db, payment.payment_id)

    await world.sweep()
    settled = await _get(uow, payment.payment_id)
    assert settled is not None
    assert settled.status == PaymentStatus.CAPTURED
    assert settled.captured_minor == 800
    assert settled.order_id == order_id
    assert sandbox.api.state.count("capture", payment.provider_payment_id) == 1
    assert (await client.capture(payment.payment_id, order_id)).status == PS.PAYMENT_STATUS_CAPTURED
    assert await _event_types(payment_db, payment.payment_id) == ["PaymentAuthorized", "PaymentCaptured"]


async def test_a_capture_that_never_reached_the_provider_goes_back_to_authorized(client: Client, world: World) -> None:
    uow, sandbox, payment_db = world.uow, world.sandbox, world.db
    payment = await client.authorize()
    order_id = unique("order")
    faults.configure("payment.capture.before_provider=error#1")
    await _fails(client.capture(payment.payment_id, order_id))
    await _time_passes(payment_db, payment.payment_id)

    await world.sweep()
    assert await _status(uow, payment.payment_id) == PaymentStatus.AUTHORIZED
    assert sandbox.api.state.intents[payment.provider_payment_id].status == "requires_capture"
    # The capture's caller (or its DLQ entry) comes back and captures, once.
    assert (await client.capture(payment.payment_id, order_id)).status == PS.PAYMENT_STATUS_CAPTURED
    assert sandbox.api.state.count("capture", payment.provider_payment_id) == 1


@pytest.mark.parametrize("when", ["before", "after"])
async def test_a_refund_left_pending_is_finished_once(client: Client, world: World, when: str) -> None:
    uow, sandbox, payment_db = world.uow, world.sandbox, world.db
    payment = await client.authorize()
    await client.capture(payment.payment_id, unique("order"))
    faults.configure(f"payment.refund.{when}_provider=error#1")
    refund = pb.RefundPaymentRequest(payment_id=payment.payment_id, idempotency_key=unique("refund"))
    await _fails(client.call(client.stub.RefundPayment, refund))
    await _time_passes(payment_db, payment.payment_id)

    await world.sweep()
    done = await _get(uow, payment.payment_id)
    assert done is not None
    assert done.status == PaymentStatus.REFUNDED
    assert done.refunded == Money("USD", 800)
    intent = sandbox.api.state.intents[payment.provider_payment_id]
    assert intent.amount_refunded == 800
    assert sandbox.api.state.count("refund", intent.id) == 1
    assert (await _event_types(payment_db, payment.payment_id)).count("PaymentRefunded") == 1


async def test_an_authorization_nobody_asked_about_again_is_voided_at_the_provider(
    client: Client, world: World
) -> None:
    uow, sandbox, payment_db = world.uow, world.sandbox, world.db
    request = _authorize_request()
    faults.configure("payment.authorize.after_provider=error#1")
    payment_id = await _authorize_failing(client, request)
    [intent] = sandbox.api.state.find_by_key(request.idempotency_key)
    assert await _status(uow, payment_id) == PaymentStatus.PENDING

    # Well within the longest checkout: a retry may still come, so it is left alone.
    await world.sweep()
    assert await _status(uow, payment_id) == PaymentStatus.PENDING

    await _time_passes(payment_db, payment_id)
    await world.sweep()
    assert await _status(uow, payment_id) == PaymentStatus.VOIDED
    assert sandbox.api.state.intents[intent.id].status == "canceled"
    # The late retry cannot reopen it.
    assert (await client.authorize(request)).status == PS.PAYMENT_STATUS_VOIDED


async def test_an_authorization_the_provider_never_got_ends_failed(client: Client, world: World) -> None:
    uow, sandbox, payment_db = world.uow, world.sandbox, world.db
    request = _authorize_request()
    faults.configure("payment.authorize.before_provider=error#1")
    payment_id = await _authorize_failing(client, request)
    await _time_passes(payment_db, payment_id)
    await world.sweep()
    assert await _status(uow, payment_id) == PaymentStatus.FAILED
    assert sandbox.api.state.find_by_key(request.idempotency_key) == []


async def test_a_cash_on_delivery_payment_left_pending_is_voided_without_a_provider(
    world: World,
) -> None:
    uow, payment_db = world.uow, world.db
    new = NewPayment(
        payment_id=uuid.uuid4(),
        idempotency_key=unique("pay"),
        order_ref=unique("sess"),
        customer_id="cust-1",
        amount=Money("USD", 800),
        payment_method="cod",
        provider="cod",
        return_url="",
    )
    async with uow.single() as tx:
        await tx.payments.create_or_get(new)  # the process died before recording CASH_ON_DELIVERY
    await _time_passes(payment_db, new.payment_id)
    await world.sweep()
    assert await _status(uow, new.payment_id) == PaymentStatus.VOIDED


async def _authorize_failing(client: Client, request: pb.AuthorizePaymentRequest) -> str:
    """The payment id of an authorization that failed UNAVAILABLE."""
    return (await _fails(client.authorize(request)))["payment_id"]


async def test_the_payment_service_runs_the_sweeper(
    payment_settings: Settings, service_token: str, client: Client, uow: SqlUnitOfWork, payment_db: AsyncEngine
) -> None:
    payment = await client.authorize()
    faults.configure("payment.void.before_provider=error#1")
    void = pb.VoidAuthorizationRequest(payment_id=payment.payment_id, reason="checkout failed")
    await _fails(client.call(client.stub.VoidAuthorization, void))
    await _time_passes(payment_db, payment.payment_id)

    boot = functools.partial(bootstrap, sweeper=Sweeper(POLICY, interval_seconds=0.2))
    async with running_service(boot, payment_settings, "127.0.0.1:0"):
        deadline = time.monotonic() + 15
        while await _status(uow, payment.payment_id) != PaymentStatus.VOIDED:
            assert time.monotonic() < deadline, "the service's sweeper never finished the void"
            await asyncio.sleep(0.1)


def test_sweeper_settings(settings: Settings) -> None:
    default = sweeper_settings(settings, {})
    assert default == Sweeper(SweepPolicy(stuck_seconds=120, abandoned_seconds=900), interval_seconds=30)
    tuned = sweeper_settings(
        settings,
        {
            "KASSA_PAYMENT_SWEEP_INTERVAL_SECONDS": "5",
            "KASSA_PAYMENT_STUCK_SECONDS": "40",
            "KASSA_PAYMENT_ABANDONED_SECONDS": "60",
            "KASSA_PAYMENT_RECONCILE_LOOKBACK_SECONDS": "7200",
        },
    )
    policy = SweepPolicy(stuck_seconds=40, abandoned_seconds=60, reconcile_lookback_seconds=7200)
    assert tuned == Sweeper(policy, interval_seconds=5)
    for bad in (
        {"KASSA_PAYMENT_SWEEP_INTERVAL_SECONDS": "0"},
        {"KASSA_PAYMENT_STUCK_SECONDS": "soon"},
        {"KASSA_PAYMENT_ABANDONED_SECONDS": "1"},
        {"KASSA_PAYMENT_RECONCILE_LOOKBACK_SECONDS": "-1"},
    ):
        with pytest.raises(ConfigError):
            sweeper_settings(dataclasses.replace(settings, rpc_timeout_seconds=5.0), bad)


async def test_two_sweepers_racing_over_the_same_stuck_payments_finish_each_once(client: Client, world: World) -> None:
    """Two replicas of the payment service sweep at once (DESIGN.md §5: every worker is safe with several)."""
    uow, sandbox, payment_db = world.uow, world.sandbox, world.db
    voiding = await client.authorize()
    faults.configure("sandbox.void=error")
    void = pb.VoidAuthorizationRequest(payment_id=voiding.payment_id, reason="checkout failed")
    await _fails(client.call(client.stub.VoidAuthorization, void))
    capturing = await client.authorize()
    faults.configure("payment.capture.after_provider=error#1")
    await _fails(client.capture(capturing.payment_id, unique("order")))
    refunding = await client.authorize()
    faults.configure(None)
    await client.capture(refunding.payment_id, unique("order"))
    faults.configure("payment.refund.after_provider=error#1")
    refund = pb.RefundPaymentRequest(payment_id=refunding.payment_id, idempotency_key=unique("refund"))
    await _fails(client.call(client.stub.RefundPayment, refund))
    faults.configure("payment.authorize.after_provider=error#1")
    request = _authorize_request()
    abandoned = await _authorize_failing(client, request)
    faults.configure(None)
    for payment_id in (voiding.payment_id, capturing.payment_id, refunding.payment_id, abandoned):
        await _time_passes(payment_db, payment_id)

    # Two replicas: two units of work (each its own connections) sweeping at the same moment, twice over.
    second = SweepStuckPayments(SqlUnitOfWork(payment_db), world.providers, POLICY)
    for _ in range(2):
        await asyncio.gather(world.sweep(), second())

    assert await _status(uow, voiding.payment_id) == PaymentStatus.VOIDED
    assert await _status(uow, capturing.payment_id) == PaymentStatus.CAPTURED
    assert await _status(uow, refunding.payment_id) == PaymentStatus.REFUNDED
    assert await _status(uow, abandoned) == PaymentStatus.VOIDED
    assert sandbox.api.state.count("capture", capturing.provider_payment_id) == 1
    assert sandbox.api.state.count("refund", refunding.provider_payment_id) == 1
    assert sandbox.api.state.intents[refunding.provider_payment_id].amount_refunded == 800
    [intent] = sandbox.api.state.find_by_key(request.idempotency_key)
    assert sandbox.api.state.intents[intent.id].status == "canceled"
    # Each outcome is one state change with one event, whichever sweeper got there first.
    assert await _event_types(payment_db, voiding.payment_id) == ["PaymentAuthorized", "PaymentVoided"]
    assert await _event_types(payment_db, capturing.payment_id) == ["PaymentAuthorized", "PaymentCaptured"]
    assert (await _event_types(payment_db, refunding.payment_id)).count("PaymentRefunded") == 1
    assert (await _event_types(payment_db, abandoned)).count("PaymentVoided") == 1
