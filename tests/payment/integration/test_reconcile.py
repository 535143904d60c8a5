"""Reconciliation of the provider's intents against payments: an authorization that reached the provider
after the void that looked for it (a late request), or whose payment row is gone, is cancelled once it is
past the grace period; holds with a live payment are left alone. The sandbox lists intents by creation time."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import httpx
import pytest
import pytest_asyncio
from helpers import bearer, unique
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.sandbox.server import RunningSandbox
from infra import faults
from infra.config import Settings
from kassa.common.v1 import money_pb2
from kassa.payment.v1 import payment_pb2, payment_service_pb2
from kassa.payment.v1.payment_service_pb2_grpc import PaymentServiceStub
from payment.adapter.sandbox_provider import SandboxProvider, provider_session
from payment.biz.providers import Providers
from payment.biz.reconcile import ReconcileIntents
from payment.data.repositories import SqlUnitOfWork
from payment.model.payment import PaymentStatus
from payment.model.provider import ProviderUnavailable

pytestmark = pytest.mark.integration

PS = payment_pb2.PaymentStatus
pb = payment_service_pb2
TIMEOUT = 20
GRACE = 900.0
# Longer than the payment service waits for the provider (1 s in these tests).
LATE = 1.6


@pytest_asyncio.fixture(loop_scope="session")
async def http(sandbox: RunningSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=10) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="session")
async def provider_http(sandbox: RunningSandbox) -> AsyncIterator[aiohttp.ClientSession]:
    """The adapter's own session to the sandbox (``http`` is the test's, for calls of its own)."""
    async with provider_session(sandbox.url, 10) as session:
        yield session


@pytest_asyncio.fixture(loop_scope="session")
async def providers(provider_http: aiohttp.ClientSession, settings: Settings) -> Providers:
    return Providers([SandboxProvider(provider_http, settings.webhook_secret)])


@pytest.fixture
def reconciler(payment_db: AsyncEngine, providers: Providers) -> ReconcileIntents:
    return ReconcileIntents(SqlUnitOfWork(payment_db), providers, grace_seconds=GRACE, lookback_seconds=3600)


def _authorize_request() -> pb.AuthorizePaymentRequest:
    return pb.AuthorizePaymentRequest(
        idempotency_key=unique("pay"),
        order_ref=unique("sess"),
        amount=money_pb2.Money(currency_code="USD", amount_minor=600),
        payment_method="tok_visa",
        customer_id="cust-1",
    )


async def _create(http: httpx.AsyncClient, metadata: dict[str, str]) -> dict[str, object]:
    body = {"amount": 600, "currency": "usd", "payment_method": "tok_visa", "metadata": metadata}
    response = await http.post("/v1/payment_intents", json=body, headers={"Idempotency-Key": unique("k")})
    assert response.status_code == 200
    created: dict[str, object] = response.json()
    return created


async def test_intents_are_listed_by_creation_time(http: httpx.AsyncClient) -> None:
    ours = [str((await _create(http, {}))["id"]) for _ in range(3)]
    started = time.time()

    async def listed(**params: str) -> list[str]:
        found: list[str] = []
        cursor: dict[str, str] = {}
        while True:
            page = (await http.get("/v1/payment_intents", params={"limit": "2", **params, **cursor})).json()
            found += [i["id"] for i in page["data"] if i["id"] in ours]
            if not page["has_more"]:
                return found
            cursor = {"starting_after": page["data"][-1]["id"]}

    now = int(started)
    assert await listed(**{"created[gt]": str(now - 60), "created[lte]": str(now + 1)}) == ours[::-1]
    assert await listed(**{"created[gt]": str(now + 1)}) == []
    assert await listed(**{"created[lte]": str(now - 60)}) == []
    refused = await http.get("/v1/payment_intents", params={"created[gt]": "yesterday"})
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "created[gt]"


async def test_an_authorization_that_arrived_after_its_void_is_cancelled_past_the_grace_period(
    payment_stub: PaymentServiceStub, service_token: str, sandbox: RunningSandbox, payment_db: AsyncEngine,
    reconciler: ReconcileIntents,
) -> None:  # fmt: skip
    md = bearer(service_token)
    request = _authorize_request()
    # The authorization reaches the provider late; payment gives up waiting (UNAVAILABLE) ...
    faults.configure(f"sandbox.authorize=delay:{LATE}#1")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await payment_stub.AuthorizePayment(request, metadata=md, timeout=TIMEOUT)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # ... and checkout voids what its key made: the provider has nothing yet, so the payment ends FAILED.
    void = pb.VoidAuthorizationRequest(idempotency_key=request.idempotency_key, reason="checkout failed")
    failed = (await payment_stub.VoidAuthorization(void, metadata=md, timeout=TIMEOUT)).payment
    assert failed.status == PS.PAYMENT_STATUS_FAILED
    deadline = time.monotonic() + 10
    while not sandbox.api.state.find_by_key(request.idempotency_key):
        assert time.monotonic() < deadline, "the late authorization never arrived"
        await asyncio.sleep(0.05)
    [intent] = sandbox.api.state.find_by_key(request.idempotency_key)
    assert intent.status == "requires_capture"  # held, with no live payment behind it

    # Within the grace period it is not looked at; past it, it is cancelled, once.
    await reconciler(time.time())
    assert sandbox.api.state.intents[intent.id].status == "requires_capture"
    outcomes = await reconciler(time.time() + GRACE + 5)
    assert outcomes["reconcile: orphan cancelled"] >= 1
    assert sandbox.api.state.intents[intent.id].status == "canceled"
    async with SqlUnitOfWork(payment_db).read() as tx:
        payment = await tx.payments.get(uuid.UUID(failed.payment_id))
    assert payment is not None and payment.status == PaymentStatus.FAILED
    # Each intent is examined once: a later pass does not call the provider about it again.
    await reconciler(time.time() + GRACE + 10)
    assert sandbox.api.state.count("cancel", intent.id) == 1


async def test_an_intent_whose_payment_is_gone_is_cancelled_and_live_holds_are_kept(
    payment_stub: PaymentServiceStub, service_token: str, http: httpx.AsyncClient, sandbox: RunningSandbox,
    reconciler: ReconcileIntents,
) -> None:  # fmt: skip
    lost = await _create(http, {"payment_id": str(uuid.uuid4()), "kassa_session_id": unique("sess")})
    foreign = await _create(http, {"note": "not created by Kassa"})
    live = (
        await payment_stub.AuthorizePayment(_authorize_request(), metadata=bearer(service_token), timeout=TIMEOUT)
    ).payment

    await reconciler(time.time() + GRACE + 5)
    assert sandbox.api.state.intents[str(lost["id"])].status == "canceled"
    assert sandbox.api.state.intents[str(foreign["id"])].status == "requires_capture"
    assert sandbox.api.state.intents[live.provider_payment_id].status == "requires_capture"


class Outage:
    """The sandbox provider, whose intent list fails while ``down``."""

    def __init__(self, inner: SandboxProvider) -> None:
        self.inner = inner
        self.name = inner.name
        self.down = True

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.inner, attribute)

    async def list_intents(self, *args: Any) -> Any:
        if self.down:
            raise ProviderUnavailable("timeout", "the provider did not answer in time")
        return await self.inner.list_intents(*args)


async def test_a_provider_outage_is_looked_at_again_next_time(
    payment_db: AsyncEngine,
    settings: Settings,
    http: httpx.AsyncClient,
    provider_http: aiohttp.ClientSession,
    sandbox: RunningSandbox,
) -> None:
    lost = await _create(http, {"payment_id": str(uuid.uuid4())})
    provider = Outage(SandboxProvider(provider_http, settings.webhook_secret))
    reconciler = ReconcileIntents(
        SqlUnitOfWork(payment_db), Providers([provider]), grace_seconds=GRACE, lookback_seconds=3600
    )
    outcomes = await reconciler(time.time() + GRACE + 5)
    assert outcomes["reconcile: provider unavailable"] == 1
    assert sandbox.api.state.intents[str(lost["id"])].status == "requires_capture"
    provider.down = False
    await reconciler(time.time() + GRACE + 6)
    assert sandbox.api.state.intents[str(lost["id"])].status == "canceled"
