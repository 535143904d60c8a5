"""Duplicated and reordered webhooks, end to end: the sandbox posts its real signed webhooks (with the faults
of ``sandbox.webhook``) to a receiver that hands them to PaymentService.HandleWebhook, as the gateway does.
Each event is applied once, and the payment ends where the provider's ledger says it is."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
import sqlalchemy as sa
from helpers import bearer, unique
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devstack.sandbox import SandboxConfig, running_sandbox
from devstack.sandbox.server import RunningSandbox, serving
from infra import faults
from infra.config import Settings
from infra.runner import running_service
from infra.webhook_signature import SIGNATURE_HEADER
from kassa.common.v1 import money_pb2
from kassa.payment.v1 import payment_pb2, payment_service_pb2
from kassa.payment.v1.payment_service_pb2_grpc import PaymentServiceStub
from payment.bootstrap import bootstrap
from payment.data.tables import outbox, provider_events

pytestmark = pytest.mark.integration

PS = payment_pb2.PaymentStatus
pb = payment_service_pb2
TIMEOUT = 20
REORDER_SECONDS = 1.0


@dataclass
class Mesh:
    """The sandbox, the payment service it sends webhooks to, and what the receiver handed over."""

    sandbox: RunningSandbox
    stub: PaymentServiceStub
    md: tuple[tuple[str, str], ...]
    http: httpx.AsyncClient
    # (event id, type, duplicate as the payment service answered) in arrival order.
    handled: list[tuple[str, str, bool]] = field(default_factory=list)

    async def authorize(self, request: pb.AuthorizePaymentRequest) -> payment_pb2.Payment:
        return (await self.stub.AuthorizePayment(request, metadata=self.md, timeout=TIMEOUT)).payment

    async def get(self, payment_id: str) -> payment_pb2.Payment:
        request = pb.GetPaymentRequest(payment_id=payment_id)
        return (await self.stub.GetPayment(request, metadata=self.md, timeout=TIMEOUT)).payment

    async def call(self, rpc: Callable[..., Awaitable[Any]], request: Any) -> Any:
        return await rpc(request, metadata=self.md, timeout=TIMEOUT)

    async def drain(self) -> None:
        assert self.sandbox.api.sender is not None
        await asyncio.wait_for(self.sandbox.api.sender.drain(), 15)

    def about(self, intent_id: str) -> list[tuple[str, bool]]:
        """(type, duplicate) of each delivery for the intent, in arrival order."""
        events = {e["id"]: e for e in self.sandbox.api.events}
        return [
            (kind, duplicate)
            for event_id, kind, duplicate in self.handled
            if events[event_id]["data"]["object"]["id"] == intent_id
        ]


@pytest_asyncio.fixture(loop_scope="session")
async def mesh(settings: Settings, service_token: str) -> AsyncIterator[Mesh]:
    holder: list[Mesh] = []

    async def hook(request: Request) -> Response:
        m = holder[0]
        body = await request.body()
        webhook = pb.HandleWebhookRequest(
            provider="sandbox", payload=body, signature=request.headers.get(SIGNATURE_HEADER, "")
        )
        try:
            answer = await m.call(m.stub.HandleWebhook, webhook)
        except grpc.aio.AioRpcError as exc:
            return JSONResponse({"error": exc.details()}, status_code=500)
        m.handled.append((answer.event_id, json.loads(body)["type"], answer.duplicate))
        return JSONResponse({"ok": True})

    async with serving(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as receiver_url:
        config = SandboxConfig(
            webhook_url=f"{receiver_url}/hook", webhook_backoff_seconds=0.05, webhook_reorder_seconds=REORDER_SECONDS
        )
        async with running_sandbox(settings, config) as sb:
            service_settings = dataclasses.replace(settings, sandbox_url=sb.url, rpc_timeout_seconds=2.0)
            async with (
                running_service(bootstrap, service_settings, "127.0.0.1:0", run_workers=False) as server,
                grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
                httpx.AsyncClient(base_url=sb.url, timeout=10) as http,
            ):
                holder.append(Mesh(sb, PaymentServiceStub(channel), bearer(service_token), http))
                yield holder[0]


def _authorize_request(token: str = "tok_visa") -> pb.AuthorizePaymentRequest:
    return pb.AuthorizePaymentRequest(
        idempotency_key=unique("pay"),
        order_ref=unique("sess"),
        amount=money_pb2.Money(currency_code="USD", amount_minor=1200),
        payment_method=token,
        customer_id="cust-1",
    )


async def _event_types(db: AsyncEngine, payment_id: str) -> list[str]:
    async with db.connect() as conn:
        rows = await conn.execute(
            sa.select(outbox.c.event_type).where(outbox.c.aggregate_id == payment_id).order_by(outbox.c.created_at)
        )
        return [r.event_type for r in rows]


async def _claimed_events(db: AsyncEngine, payment_id: str) -> int:
    async with db.connect() as conn:
        count = await conn.execute(
            sa.select(sa.func.count()).where(provider_events.c.payment_id == uuid.UUID(payment_id))
        )
        return int(count.scalar_one())


async def _unavailable(call: Awaitable[Any]) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_duplicated_webhooks_of_a_three_d_secure_payment_are_applied_once(
    mesh: Mesh, payment_db: AsyncEngine
) -> None:
    faults.configure("sandbox.webhook=duplicate")
    payment = await mesh.authorize(_authorize_request("tok_threeDSecure"))
    assert payment.status == PS.PAYMENT_STATUS_REQUIRES_ACTION
    assert (await mesh.http.post(f"/v1/3ds/{payment.provider_payment_id}/complete")).status_code == 200
    await mesh.drain()
    assert (await mesh.get(payment.payment_id)).status == PS.PAYMENT_STATUS_AUTHORIZED

    captured = await mesh.call(
        mesh.stub.CapturePayment, pb.CapturePaymentRequest(payment_id=payment.payment_id, order_id=unique("order"))
    )
    assert captured.payment.status == PS.PAYMENT_STATUS_CAPTURED
    await mesh.drain()
    deliveries = mesh.about(payment.provider_payment_id)
    assert sorted(deliveries) == [
        ("payment_intent.amount_capturable_updated", False),
        ("payment_intent.amount_capturable_updated", True),
        ("payment_intent.succeeded", False),
        ("payment_intent.succeeded", True),
    ]
    assert (await mesh.get(payment.payment_id)).status == PS.PAYMENT_STATUS_CAPTURED
    assert await _event_types(payment_db, payment.payment_id) == [
        "PaymentRequiresAction",
        "PaymentAuthorized",
        "PaymentCaptured",
    ]
    assert await _claimed_events(payment_db, payment.payment_id) == 2


async def test_a_capture_webhook_overtaking_the_authorization_webhook_ends_captured(
    mesh: Mesh, payment_db: AsyncEngine
) -> None:
    request = _authorize_request()
    # The authorization's notice is held back (until the next webhook of its intent), and payment fails
    # before recording either answer of the provider: only the webhooks can tell it what happened.
    faults.configure("sandbox.webhook=reorder#1,payment.authorize.after_provider=error#1")
    await _unavailable(mesh.authorize(request))
    payment = await mesh.authorize(request)
    assert payment.status == PS.PAYMENT_STATUS_AUTHORIZED
    faults.configure("payment.capture.after_provider=error#1")
    capture = pb.CapturePaymentRequest(payment_id=payment.payment_id, order_id=unique("order"))
    await _unavailable(mesh.call(mesh.stub.CapturePayment, capture))
    await mesh.drain()

    assert mesh.about(payment.provider_payment_id) == [
        ("payment_intent.succeeded", False),
        ("payment_intent.amount_capturable_updated", False),
    ]
    final = await mesh.get(payment.payment_id)
    assert final.status == PS.PAYMENT_STATUS_CAPTURED
    assert final.captured_amount.amount_minor == 1200
    assert mesh.sandbox.api.state.count("capture", payment.provider_payment_id) == 1
    assert await _event_types(payment_db, payment.payment_id) == ["PaymentAuthorized", "PaymentCaptured"]
    # A retry of the capture finds it done.
    assert (await mesh.call(mesh.stub.CapturePayment, capture)).payment.status == PS.PAYMENT_STATUS_CAPTURED


async def test_an_authorization_webhook_arriving_after_the_void_never_reopens_it(
    mesh: Mesh, payment_db: AsyncEngine
) -> None:
    request = _authorize_request()
    faults.configure("sandbox.webhook=reorder#1,payment.authorize.after_provider=error#1")
    await _unavailable(mesh.authorize(request))
    voided = await mesh.call(
        mesh.stub.VoidAuthorization, pb.VoidAuthorizationRequest(idempotency_key=request.idempotency_key)
    )
    assert voided.payment.status == PS.PAYMENT_STATUS_VOIDED
    await mesh.drain()
    assert mesh.about(voided.payment.provider_payment_id) == [
        ("payment_intent.canceled", False),
        ("payment_intent.amount_capturable_updated", False),
    ]
    assert (await mesh.get(voided.payment.payment_id)).status == PS.PAYMENT_STATUS_VOIDED
    assert mesh.sandbox.api.state.intents[voided.payment.provider_payment_id].status == "canceled"
    assert await _event_types(payment_db, voided.payment.payment_id) == ["PaymentVoided"]


async def test_a_held_back_failure_of_three_d_secure_still_fails_the_payment_once(
    mesh: Mesh, payment_db: AsyncEngine
) -> None:
    payment = await mesh.authorize(_authorize_request("tok_threeDSecure"))
    faults.configure("sandbox.webhook=reorder#1")
    assert (await mesh.http.post(f"/v1/3ds/{payment.provider_payment_id}/fail")).status_code == 200
    assert (await mesh.get(payment.payment_id)).status == PS.PAYMENT_STATUS_REQUIRES_ACTION
    started = time.monotonic()
    await mesh.drain()
    assert time.monotonic() - started > REORDER_SECONDS / 2
    failed = await mesh.get(payment.payment_id)
    assert failed.status == PS.PAYMENT_STATUS_FAILED
    assert failed.failure_code == "authentication_required"
    assert await _event_types(payment_db, payment.payment_id) == ["PaymentRequiresAction", "PaymentFailed"]


async def test_an_authorization_that_arrives_after_its_void_is_cancelled_as_its_webhook_comes(
    mesh: Mesh, payment_db: AsyncEngine
) -> None:
    request = _authorize_request()
    # The authorization reaches the provider only after payment gave up on it and checkout voided its key
    # (the provider had nothing then, so the payment ended FAILED).
    faults.configure("sandbox.authorize=delay:1.6#1")
    await _unavailable(mesh.authorize(request))
    void = pb.VoidAuthorizationRequest(idempotency_key=request.idempotency_key, reason="checkout failed")
    failed = (await mesh.call(mesh.stub.VoidAuthorization, void)).payment
    assert failed.status == PS.PAYMENT_STATUS_FAILED

    deadline = time.monotonic() + 10
    while not mesh.sandbox.api.state.find_by_key(request.idempotency_key):
        assert time.monotonic() < deadline, "the late authorization never arrived"
        await asyncio.sleep(0.05)
    [intent] = mesh.sandbox.api.state.find_by_key(request.idempotency_key)
    await mesh.drain()
    # Its webhook told payment of a hold nobody wants: cancelled at once, the payment stays FAILED.
    assert mesh.sandbox.api.state.intents[intent.id].status == "canceled"
    assert (await mesh.get(failed.payment_id)).status == PS.PAYMENT_STATUS_FAILED
    assert await _event_types(payment_db, failed.payment_id) == ["PaymentFailed"]
