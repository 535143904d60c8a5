"""The sandbox behaves like a real processor: a ledger that survives restarts, paginated listing,
Kassa's ids in the intents' metadata, and webhooks retried until acknowledged (also after a restart)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import unique
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devstack.localstack import free_port
from devstack.sandbox import SandboxConfig, running_sandbox
from devstack.sandbox.server import serving
from devstack.sandbox.webhooks import backoff_delays
from infra.config import Settings

pytestmark = pytest.mark.integration


class FlakyReceiver:
    """Answers 503 to the first ``fail_first`` posts of each event, then 200."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.posts: list[str] = []
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        event_id = (await request.json())["id"]
        self.posts.append(event_id)
        if self.posts.count(event_id) <= self.fail_first:
            return JSONResponse({"error": "busy"}, status_code=503)
        return JSONResponse({"received": True})


async def _create(http: httpx.AsyncClient, token: str = "tok_visa", **metadata: str) -> dict[str, Any]:
    body = {"amount": 1200, "currency": "usd", "payment_method": token, "metadata": metadata}
    response = await http.post("/v1/payment_intents", json=body, headers={"Idempotency-Key": unique("k")})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def _eventually(check: Any, what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_the_ledger_survives_a_restart_and_lists_newest_first_with_a_cursor(
    settings: Settings, tmp_path: Path
) -> None:
    config = SandboxConfig(db_path=str(tmp_path / "ledger.sqlite3"))
    port = free_port()
    async with running_sandbox(settings, config, port=port) as sb, httpx.AsyncClient(base_url=sb.url) as http:
        created = [await _create(http, kassa_session_id=f"sess-{n}") for n in range(3)]
        captured = await http.post(
            f"/v1/payment_intents/{created[0]['id']}/capture",
            json={"metadata": {"kassa_order_id": "order-0"}},
            headers={"Idempotency-Key": unique("cap")},
        )
        assert captured.status_code == 200
        refund = await http.post(
            "/v1/refunds", json={"payment_intent": created[0]["id"], "amount": 200}, headers={"Idempotency-Key": "r1"}
        )
        assert refund.status_code == 200

    async with running_sandbox(settings, config, port=port) as sb, httpx.AsyncClient(base_url=sb.url) as http:
        first = (await http.get("/v1/payment_intents", params={"limit": 2})).json()
        assert [i["id"] for i in first["data"]] == [created[2]["id"], created[1]["id"]]
        assert first["has_more"] is True
        rest = (await http.get("/v1/payment_intents", params={"limit": 2, "starting_after": created[1]["id"]})).json()
        assert [i["id"] for i in rest["data"]] == [created[0]["id"]]
        assert rest["has_more"] is False
        old = rest["data"][0]
        assert old["status"] == "succeeded" and old["amount_received"] == 1200 and old["amount_refunded"] == 200
        assert old["metadata"] == {"kassa_session_id": "sess-0", "kassa_order_id": "order-0"}
        # The stored idempotent answer survived too: a retried refund is a replay, not a second refund.
        again = await http.post(
            "/v1/refunds", json={"payment_intent": created[0]["id"], "amount": 200}, headers={"Idempotency-Key": "r1"}
        )
        assert again.json()["id"] == refund.json()["id"]
        assert again.headers["Idempotent-Replayed"] == "true"
        assert sb.api.state.intents[created[0]["id"]].amount_refunded == 200
        # A new intent goes on top of the old ones.
        newest = await _create(http)
        top = (await http.get("/v1/payment_intents", params={"limit": 1})).json()
        assert [i["id"] for i in top["data"]] == [newest["id"]]


async def test_listing_refuses_bad_limits_and_unknown_cursors(settings: Settings) -> None:
    async with running_sandbox(settings, SandboxConfig()) as sb, httpx.AsyncClient(base_url=sb.url) as http:
        for limit in ("0", "101", "x"):
            response = await http.get("/v1/payment_intents", params={"limit": limit})
            assert response.status_code == 400
            assert response.json()["error"]["param"] == "limit"
        missing = await http.get("/v1/payment_intents", params={"starting_after": "pi_nope"})
        assert missing.status_code == 404


async def test_a_capture_never_exceeds_the_authorization(settings: Settings) -> None:
    async with running_sandbox(settings, SandboxConfig()) as sb, httpx.AsyncClient(base_url=sb.url) as http:
        intent = await _create(http)
        response = await http.post(
            f"/v1/payment_intents/{intent['id']}/capture",
            json={"amount_to_capture": 1201},
            headers={"Idempotency-Key": unique("cap")},
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "amount_too_large"
        assert sb.api.state.intents[intent["id"]].status == "requires_capture"


async def test_a_webhook_failed_twice_is_delivered_on_the_third_attempt_and_no_more(settings: Settings) -> None:
    receiver = FlakyReceiver(fail_first=2)
    async with serving(receiver.app) as receiver_url:
        config = SandboxConfig(webhook_url=f"{receiver_url}/hook", webhook_backoff_seconds=0.05)
        async with running_sandbox(settings, config) as sb, httpx.AsyncClient(base_url=sb.url) as http:
            intent = await _create(http)
            assert sb.api.sender is not None
            await sb.api.sender.drain()
            [event] = [e for e in sb.api.events if e["data"]["object"]["id"] == intent["id"]]
            assert receiver.posts == [event["id"]] * 3
            assert sb.api.state.ledger.webhook_status(event["id"]) == "delivered"


def test_backoff_doubles_up_to_its_cap() -> None:
    assert backoff_delays(6, 1.0, 5.0) == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff_delays(1, 1.0, 5.0) == []


async def test_undelivered_webhooks_are_sent_again_after_a_restart(settings: Settings, tmp_path: Path) -> None:
    db_path = str(tmp_path / "ledger.sqlite3")
    down = FlakyReceiver(fail_first=1000)
    async with serving(down.app) as down_url:
        # The receiver is down, and the sandbox is stopped while it waits to retry.
        config = SandboxConfig(webhook_url=f"{down_url}/hook", webhook_backoff_seconds=30.0, db_path=db_path)
        async with running_sandbox(settings, config) as sb, httpx.AsyncClient(base_url=sb.url) as http:
            intent = await _create(http)
            await _eventually(lambda: len(down.posts) == 1, "the first delivery attempt")
            [event] = [e for e in sb.api.events if e["data"]["object"]["id"] == intent["id"]]
            assert sb.api.state.ledger.webhook_status(event["id"]) == "pending"

    up = FlakyReceiver(fail_first=0)
    async with serving(up.app) as up_url:
        config = SandboxConfig(webhook_url=f"{up_url}/hook", webhook_backoff_seconds=0.05, db_path=db_path)
        async with running_sandbox(settings, config) as sb:
            assert sb.api.sender is not None
            await sb.api.sender.drain()
            assert up.posts == [event["id"]]
            assert sb.api.state.ledger.webhook_status(event["id"]) == "delivered"
