"""The sandbox provider's chaos faults over real HTTP: outages and late answers of its API (``sandbox.<op>``)
and duplicated, reordered, delayed and lost webhooks (``sandbox.webhook``)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
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

from devstack.sandbox import SandboxConfig, running_sandbox
from devstack.sandbox.server import RunningSandbox, serving
from infra import faults
from infra.config import Settings

pytestmark = pytest.mark.integration

REORDER_SECONDS = 1.0


@pytest_asyncio.fixture(loop_scope="session")
async def http(sandbox: RunningSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=10) as client:
        yield client


def _key() -> dict[str, str]:
    return {"Idempotency-Key": unique("k")}


async def _create(http: httpx.AsyncClient, headers: dict[str, str], token: str = "tok_visa") -> httpx.Response:
    body = {"amount": 1500, "currency": "usd", "payment_method": token, "capture_method": "manual"}
    return await http.post("/v1/payment_intents", json=body, headers=headers)


def _is_outage(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"


# -- the API: sandbox.authorize / capture / void / refund ------------------------------------------------------


async def test_an_authorize_outage_creates_nothing_and_stores_nothing(
    http: httpx.AsyncClient, sandbox: RunningSandbox
) -> None:
    headers = _key()
    faults.configure("sandbox.authorize=error#1")
    _is_outage(await _create(http, headers))
    assert sandbox.api.state.find_by_key(headers["Idempotency-Key"]) == []
    # Nothing was stored for the key: the retry does the work, once.
    retried = await _create(http, headers)
    assert retried.status_code == 200
    assert "idempotent-replayed" not in retried.headers
    assert len(sandbox.api.state.find_by_key(headers["Idempotency-Key"])) == 1


@pytest.mark.parametrize("operation", ["capture", "void", "refund"])
async def test_an_outage_of_an_operation_does_nothing_until_retried(
    http: httpx.AsyncClient, sandbox: RunningSandbox, operation: str
) -> None:
    intent = (await _create(http, _key())).json()
    path = f"/v1/payment_intents/{intent['id']}"
    if operation == "refund":
        assert (await http.post(f"{path}/capture", json={}, headers=_key())).status_code == 200
    calls = {
        "capture": (f"{path}/capture", {}),
        "void": (f"{path}/cancel", {}),
        "refund": ("/v1/refunds", {"payment_intent": intent["id"], "amount": 500}),
    }
    url, body = calls[operation]
    headers = _key()
    before = sandbox.api.state.intents[intent["id"]].to_json()
    faults.configure(f"sandbox.{operation}=error#1")
    _is_outage(await http.post(url, json=body, headers=headers))
    assert sandbox.api.state.intents[intent["id"]].to_json() == before
    assert (await http.post(url, json=body, headers=headers)).status_code == 200
    after = sandbox.api.state.intents[intent["id"]]
    assert after.status == {"capture": "succeeded", "void": "canceled", "refund": "succeeded"}[operation]
    assert after.amount_refunded == (500 if operation == "refund" else 0)


async def test_a_late_authorization_is_done_after_the_client_gave_up_and_a_retry_replays_it(
    http: httpx.AsyncClient, sandbox: RunningSandbox
) -> None:
    headers = _key()
    key = headers["Idempotency-Key"]
    faults.configure("sandbox.authorize=delay:0.6#1")
    with pytest.raises(httpx.TimeoutException):
        await http.post(
            "/v1/payment_intents",
            json={"amount": 1500, "currency": "usd", "payment_method": "tok_visa"},
            headers=headers,
            timeout=0.2,
        )
    # The client does not know; the processor gets to it a moment later.
    deadline = time.monotonic() + 5
    while not sandbox.api.state.find_by_key(key):
        assert time.monotonic() < deadline, "the delayed authorization never arrived"
        await asyncio.sleep(0.05)
    [intent] = sandbox.api.state.find_by_key(key)
    retried = await http.post(
        "/v1/payment_intents",
        json={"amount": 1500, "currency": "usd", "payment_method": "tok_visa"},
        headers=headers,
    )
    assert retried.json()["id"] == intent.id
    assert retried.headers["idempotent-replayed"] == "true"


def test_the_sandbox_process_refuses_a_bad_fault_rule() -> None:
    env = {**os.environ, "KASSA_FAULTS": "sandbox.captur=error", "KASSA_SANDBOX_DB": ":memory:"}
    result = subprocess.run(
        [sys.executable, "-m", "devstack.sandbox"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "sandbox.captur" in result.stderr
    assert "names no fault point" in result.stderr


# -- webhooks: sandbox.webhook ------------------------------------------------------------------------------------


class Receiver:
    """Records each webhook post (event id, type) in arrival order and acknowledges it."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str, float]] = []
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        event = json.loads(await request.body())
        self.posts.append((event["id"], event["type"], time.monotonic()))
        return JSONResponse({"ok": True})

    def types(self) -> list[str]:
        return [t for _, t, _ in self.posts]


@pytest_asyncio.fixture(loop_scope="session")
async def hooked(settings: Settings) -> AsyncIterator[tuple[RunningSandbox, Receiver, httpx.AsyncClient]]:
    receiver = Receiver()
    async with serving(receiver.app) as receiver_url:
        config = SandboxConfig(
            webhook_url=f"{receiver_url}/hook", webhook_backoff_seconds=0.05, webhook_reorder_seconds=REORDER_SECONDS
        )
        async with running_sandbox(settings, config) as sb, httpx.AsyncClient(base_url=sb.url, timeout=10) as client:
            yield sb, receiver, client


async def _drain(sb: RunningSandbox) -> None:
    assert sb.api.sender is not None
    await asyncio.wait_for(sb.api.sender.drain(), 10)


async def _authorized_then_captured(http: httpx.AsyncClient) -> dict[str, Any]:
    intent = (await _create(http, _key())).json()
    captured = await http.post(f"/v1/payment_intents/{intent['id']}/capture", json={}, headers=_key())
    assert captured.status_code == 200
    return intent


async def test_a_duplicated_webhook_is_posted_twice_with_one_id(
    hooked: tuple[RunningSandbox, Receiver, httpx.AsyncClient],
) -> None:
    sb, receiver, http = hooked
    receiver.posts.clear()
    faults.configure("sandbox.webhook=duplicate#1")
    await _create(http, _key())
    await _drain(sb)
    [(first, kind, _), (second, again, _)] = receiver.posts
    assert first == second
    assert kind == again == "payment_intent.amount_capturable_updated"


async def test_a_reordered_webhook_goes_out_after_the_next_one_of_its_intent(
    hooked: tuple[RunningSandbox, Receiver, httpx.AsyncClient],
) -> None:
    sb, receiver, http = hooked
    receiver.posts.clear()
    faults.configure("sandbox.webhook=reorder#1")
    started = time.monotonic()
    await _authorized_then_captured(http)
    await _drain(sb)
    assert receiver.types() == ["payment_intent.succeeded", "payment_intent.amount_capturable_updated"]
    # Released by the capture's webhook, not by the timer.
    assert receiver.posts[-1][2] - started < REORDER_SECONDS


async def test_a_reordered_webhook_with_nothing_after_it_goes_out_after_a_short_while(
    hooked: tuple[RunningSandbox, Receiver, httpx.AsyncClient],
) -> None:
    sb, receiver, http = hooked
    receiver.posts.clear()
    faults.configure("sandbox.webhook=reorder#1")
    started = time.monotonic()
    await _create(http, _key())
    await asyncio.sleep(REORDER_SECONDS / 2)
    assert receiver.posts == []
    await _drain(sb)
    [(_, kind, at)] = receiver.posts
    assert kind == "payment_intent.amount_capturable_updated"
    assert at - started >= REORDER_SECONDS


async def test_a_delayed_webhook_and_a_lost_first_post(
    hooked: tuple[RunningSandbox, Receiver, httpx.AsyncClient],
) -> None:
    sb, receiver, http = hooked
    receiver.posts.clear()
    faults.configure("sandbox.webhook=delay:0.5#1")
    started = time.monotonic()
    await _create(http, _key())
    await _drain(sb)
    [(_, _, at)] = receiver.posts
    assert at - started >= 0.5

    receiver.posts.clear()
    faults.configure("sandbox.webhook=error#1")
    await _create(http, _key())
    await _drain(sb)
    # The first post was lost; the retry delivered it, once.
    assert receiver.types() == ["payment_intent.amount_capturable_updated"]
