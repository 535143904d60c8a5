"""Webhook secret rotation: while KASSA_WEBHOOK_SECRET_PREVIOUS is set, webhooks signed with it still pass
the gateway and the payment service (both check the signature); one signed with neither is refused by both.

The payment service runs in-process from its real bootstrap, the gateway in front of it, so this covers where
each of them reads the secrets, not just the signature helper.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import secrets
import uuid
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
import pytest_asyncio

from gateway.app import create_app
from gateway.config import GatewayConfig
from infra import webhook_signature
from infra.auth import mint_service_token
from infra.config import Settings
from infra.runner import running_service
from kassa.payment.v1 import payment_service_pb2, payment_service_pb2_grpc
from payment.biz.sweep import SweepPolicy
from payment.bootstrap import Sweeper, bootstrap

pytestmark = pytest.mark.integration

CURRENT = secrets.token_urlsafe(48)
PREVIOUS = secrets.token_urlsafe(48)


@pytest.fixture(scope="module")
def rotating(settings: Settings) -> Settings:
    return dataclasses.replace(settings, webhook_secret=CURRENT, webhook_secret_previous=PREVIOUS)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def served(
    rotating: Settings,
) -> AsyncIterator[tuple[payment_service_pb2_grpc.PaymentServiceStub, httpx.AsyncClient]]:
    quiet = functools.partial(bootstrap, sweeper=Sweeper(SweepPolicy(), interval_seconds=3600))
    async with running_service(quiet, rotating, "127.0.0.1:0", run_workers=False) as server:
        addr = f"127.0.0.1:{server.port}"
        gw_settings = dataclasses.replace(rotating, addrs={**rotating.addrs, "payment": addr})
        app = create_app(gw_settings, GatewayConfig(rate_limit_per_minute=0))
        async with (
            grpc.aio.insecure_channel(addr) as channel,
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http,
        ):
            yield payment_service_pb2_grpc.PaymentServiceStub(channel), http


def _event() -> bytes:
    # An event kind payment records and otherwise ignores: no provider call behind it.
    return json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "customer.created", "data": {"object": {}}}).encode()


@pytest.mark.parametrize("secret", [CURRENT, PREVIOUS], ids=["current", "previous"])
async def test_a_webhook_signed_with_either_secret_passes_gateway_and_payment(served, secret: str) -> None:
    _, http = served
    body = _event()
    r = await http.post(
        "/v1/payments/webhooks/sandbox",
        content=body,
        headers={webhook_signature.SIGNATURE_HEADER: webhook_signature.sign(secret, body)},
    )
    assert r.status_code == 200, r.text
    assert r.json()["received"] is True


@pytest.mark.parametrize("secret", [CURRENT, PREVIOUS], ids=["current", "previous"])
async def test_payment_itself_accepts_either_secret(served, rotating: Settings, secret: str) -> None:
    stub, _ = served
    body = _event()
    reply = await stub.HandleWebhook(
        payment_service_pb2.HandleWebhookRequest(
            provider="sandbox", payload=body, signature=webhook_signature.sign(secret, body)
        ),
        metadata=(("authorization", f"Bearer {mint_service_token(rotating.service_secret, 'gateway')}"),),
        timeout=10,
    )
    assert reply.duplicate is False


async def test_a_webhook_signed_with_any_other_secret_is_refused_by_both(served, rotating: Settings) -> None:
    stub, http = served
    body = _event()
    forged = webhook_signature.sign(secrets.token_urlsafe(48), body)
    r = await http.post(
        "/v1/payments/webhooks/sandbox", content=body, headers={webhook_signature.SIGNATURE_HEADER: forged}
    )
    assert r.status_code == 400
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.HandleWebhook(
            payment_service_pb2.HandleWebhookRequest(provider="sandbox", payload=body, signature=forged),
            metadata=(("authorization", f"Bearer {mint_service_token(rotating.service_secret, 'gateway')}"),),
            timeout=10,
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_once_the_rotation_is_over_the_previous_secret_is_refused(settings: Settings) -> None:
    """With KASSA_WEBHOOK_SECRET_PREVIOUS unset again, the old secret signs nothing the gateway accepts."""
    done = dataclasses.replace(settings, webhook_secret=CURRENT, webhook_secret_previous="")
    app = create_app(done, GatewayConfig(rate_limit_per_minute=0))
    body = _event()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http,
    ):
        r = await http.post(
            "/v1/payments/webhooks/sandbox",
            content=body,
            headers={webhook_signature.SIGNATURE_HEADER: webhook_signature.sign(PREVIOUS, body)},
        )
    assert r.status_code == 400
