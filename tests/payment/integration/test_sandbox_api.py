"""The sandbox provider over real HTTP: tokens, idempotency keys, lookups, 3-D Secure and signed webhooks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from helpers import unique
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devstack.sandbox import SandboxConfig, create_app, running_sandbox
from devstack.sandbox.server import RunningSandbox, serving
from infra.config import Settings
from infra.webhook_signature import SIGNATURE_HEADER, SignatureError, verify

pytestmark = pytest.mark.integration


class Receiver:
    """Stands in for the gateway's webhook endpoint; answers 500 to the first ``fail_first`` posts."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[tuple[bytes, str]] = []
        self.fail_first = fail_first
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        self.received.append((body, request.headers.get(SIGNATURE_HEADER, "")))
        if len(self.received) <= self.fail_first:
            return JSONResponse({"error": "try again"}, status_code=500)
        return JSONResponse({"ok": True})


@pytest_asyncio.fixture(loop_scope="session")
async def hooked(settings: Settings) -> AsyncIterator[tuple[RunningSandbox, Receiver, httpx.AsyncClient]]:
    receiver = Receiver(fail_first=1)
    async with serving(receiver.app) as receiver_url:
        config = SandboxConfig(webhook_url=f"{receiver_url}/hook", timeout_seconds=1.0, webhook_backoff_seconds=0.05)
        async with running_sandbox(settings, config) as sb, httpx.AsyncClient(base_url=sb.url) as client:
            yield sb, receiver, client


@pytest_asyncio.fixture(loop_scope="session")
async def client(sandbox: RunningSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=10) as http:
        yield http


def _intent_body(token: str, amount: int = 1500, **extra: Any) -> dict[str, Any]:
    return {"amount": amount, "currency": "usd", "payment_method": token, "capture_method": "manual", **extra}


async def _create(client: httpx.AsyncClient, token: str, key: str | None = None, **extra: Any) -> httpx.Response:
    return await client.post(
        "/v1/payment_intents", json=_intent_body(token, **extra), headers={"Idempotency-Key": key or unique("k")}
    )


async def test_visa_authorizes_and_same_key_replays(client: httpx.AsyncClient, sandbox: RunningSandbox) -> None:
    key = unique("visa")
    first = await _create(client, "tok_visa", key)
    assert first.status_code == 200
    assert first.json()["status"] == "requires_capture"
    again = await _create(client, "tok_visa", key)
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert len(sandbox.api.state.find_by_key(key)) == 1


async def test_same_key_different_body_is_409(client: httpx.AsyncClient) -> None:
    key = unique("reuse")
    assert (await _create(client, "tok_visa", key)).status_code == 200
    reused = await client.post(
        "/v1/payment_intents", json=_intent_body("tok_visa", 999), headers={"Idempotency-Key": key}
    )
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "idempotency_key_reused"


async def test_idempotency_key_is_required(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/payment_intents", json=_intent_body("tok_visa"))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "Idempotency-Key"


@pytest.mark.parametrize(
    ("token", "status", "code"),
    [("tok_chargeDeclined", 402, "card_declined"), ("tok_insufficientFunds", 402, "insufficient_funds"),
     ("tok_processingError", 500, "processing_error"), ("tok_bogus", 400, "invalid_payment_method")],
)  # fmt: skip
async def test_failing_tokens(client: httpx.AsyncClient, token: str, status: int, code: str) -> None:
    response = await _create(client, token)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_bad_amount_is_refused(client: httpx.AsyncClient) -> None:
    response = await _create(client, "tok_visa", amount=-5)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "amount"


async def test_timeout_token_outlasts_the_client_but_can_be_looked_up(
    client: httpx.AsyncClient, sandbox: RunningSandbox
) -> None:
    key = unique("slow")
    with pytest.raises(httpx.TimeoutException):
        await client.post("/v1/payment_intents", json=_intent_body("tok_timeout"), headers={"Idempotency-Key": key},
                          timeout=0.5)  # fmt: skip
    found = await client.get("/v1/payment_intents", params={"idempotency_key": key})
    assert found.status_code == 200
    [intent] = found.json()["data"]
    assert intent["status"] == "requires_capture"
    canceled = await client.post(f"/v1/payment_intents/{intent['id']}/cancel")
    assert canceled.json()["status"] == "canceled"
    assert sandbox.api.state.intents[intent["id"]].status == "canceled"


async def test_capture_then_cancel_and_refund_rules(client: httpx.AsyncClient) -> None:
    intent = (await _create(client, "tok_visa")).json()
    path = f"/v1/payment_intents/{intent['id']}"
    too_much = await client.post(
        f"{path}/capture", json={"amount_to_capture": 1501}, headers={"Idempotency-Key": unique("c")}
    )
    assert too_much.status_code == 400
    capture_key = unique("cap")
    captured = await client.post(
        f"{path}/capture", json={"amount_to_capture": 1000}, headers={"Idempotency-Key": capture_key}
    )
    assert captured.json()["status"] == "succeeded"
    assert captured.json()["amount_received"] == 1000
    replay = await client.post(
        f"{path}/capture", json={"amount_to_capture": 1000}, headers={"Idempotency-Key": capture_key}
    )
    assert replay.headers["idempotent-replayed"] == "true"
    assert (await client.post(f"{path}/cancel")).status_code == 400
    refund = await client.post("/v1/refunds", json={"payment_intent": intent["id"], "amount": 400},
                               headers={"Idempotency-Key": unique("r")})  # fmt: skip
    assert refund.status_code == 200
    assert refund.json()["amount"] == 400
    over = await client.post("/v1/refunds", json={"payment_intent": intent["id"], "amount": 601},
                             headers={"Idempotency-Key": unique("r")})  # fmt: skip
    assert over.status_code == 400
    assert (await client.get(path)).json()["amount_refunded"] == 400


async def test_capture_of_canceled_is_refused(client: httpx.AsyncClient) -> None:
    intent = (await _create(client, "tok_visa")).json()
    path = f"/v1/payment_intents/{intent['id']}"
    assert (await client.post(f"{path}/cancel")).json()["status"] == "canceled"
    assert (await client.post(f"{path}/cancel")).json()["status"] == "canceled"
    refused = await client.post(f"{path}/capture", json={}, headers={"Idempotency-Key": unique("c")})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "payment_intent_unexpected_state"


async def test_unknown_intent_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/payment_intents/pi_missing")).status_code == 404


async def test_three_d_secure_redirect_completes_and_signed_webhooks_are_delivered(
    hooked: tuple[RunningSandbox, Receiver, httpx.AsyncClient], settings: Settings
) -> None:
    sb, receiver, http = hooked
    created = await _create(http, "tok_threeDSecure", return_url="https://shop.test/back")
    intent = created.json()
    assert intent["status"] == "requires_action"
    redirect = intent["next_action"]["redirect_url"]
    assert redirect == f"{sb.url}/v1/3ds/{intent['id']}"
    page = await http.get(redirect)
    assert page.status_code == 303
    assert page.headers["location"] == "https://shop.test/back"
    assert (await http.get(f"/v1/payment_intents/{intent['id']}")).json()["status"] == "requires_capture"
    assert sb.api.sender is not None
    await sb.api.sender.drain()
    # The receiver failed the first delivery; the sandbox retried with the same event id.
    assert len(receiver.received) == 2
    (body1, sig1), (body2, sig2) = receiver.received
    assert body1 == body2
    verify(settings.webhook_secret, body2, sig2)
    assert b'"payment_intent.amount_capturable_updated"' in body2
    with pytest.raises(SignatureError):
        verify("another-secret", body1, sig1)


async def test_webhook_delivery_does_not_block_the_api(settings: Settings) -> None:
    """A receiver that never answers must not slow the API down."""
    stalled = asyncio.Event()

    async def hang(_request: Request) -> Response:
        await stalled.wait()
        return JSONResponse({})

    async with (
        serving(Starlette(routes=[Route("/hook", hang, methods=["POST"])])) as url,
        running_sandbox(settings, SandboxConfig(webhook_url=f"{url}/hook")) as sb,
    ):
        async with httpx.AsyncClient(base_url=sb.url, timeout=5.0) as http:
            response = await _create(http, "tok_visa")
        assert response.status_code == 200
        assert len(sb.api.events) == 1
        stalled.set()


def test_create_app_exposes_its_ledger(settings: Settings) -> None:
    app = create_app(settings, SandboxConfig())
    assert app.state.api.state.intents == {}
    assert SandboxConfig.from_env({"KASSA_SANDBOX_TIMEOUT_SECONDS": "9999"}).timeout_seconds == 120.0
    assert SandboxConfig.from_env({"KASSA_SANDBOX_WEBHOOK_URL": "http://x/hook"}).webhook_url == "http://x/hook"
