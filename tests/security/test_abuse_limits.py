"""Abuse limits at the gateway, as an attacker would try them: fresh guests, forged X-Forwarded-For.

Every request counts per client IP (gateway.client_ip decides whose), per token subject (a caller
without a valid token by its IP), and a guest token minted counts per IP as well. A refusal is 429 with
Retry-After and the google.rpc.Status JSON naming the limit. The routes used need no backend: a
request that gets past the limits is answered 404 (no such route), 401 or with a guest token.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from helpers import unique
from starlette.applications import Starlette

from devstack.localstack import free_ports
from gateway.app import create_app
from gateway.client_ip import TrustedProxies, parse_networks
from gateway.config import GatewayConfig
from gateway.server import uvicorn_config
from infra import webhook_signature
from infra.auth import mint_token
from infra.config import Settings

pytestmark = pytest.mark.integration

NOWHERE = "/v1/nothing-here"


def an_ip() -> str:
    """A client address of this test alone (100.64.0.0/10), so no other test's requests share its buckets."""
    n = random.getrandbits(22)
    return f"100.{64 + (n >> 16)}.{(n >> 8) & 255}.{n & 255}"


@contextlib.asynccontextmanager
async def gateway(settings: Settings, config: GatewayConfig) -> AsyncIterator[Starlette]:
    app = create_app(settings, config)
    async with app.router.lifespan_context(app):
        yield app


def client(app: Starlette, ip: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 40000)), base_url="http://gateway")


def token(settings: Settings, subject: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings.jwt_secret, subject or unique('cust'))}"}


async def until_refused(send: object, attempts: int) -> tuple[list[int], httpx.Response | None]:
    """Send until a 429, at most ``attempts`` times (twice a limit, so a window boundary can't hide it)."""
    statuses: list[int] = []
    for _ in range(attempts):
        r: httpx.Response = await send()  # type: ignore[operator]
        statuses.append(r.status_code)
        if r.status_code == 429:
            return statuses, r
    return statuses, None


def refusal(r: httpx.Response) -> dict[str, str]:
    """The limit a 429 names, with its Retry-After checked against the body."""
    body = r.json()
    assert body["code"] == 8  # RESOURCE_EXHAUSTED
    (detail,) = body["details"]
    assert detail["reason"] == "RATE_LIMITED"
    metadata: dict[str, str] = detail["metadata"]
    assert r.headers["retry-after"] == metadata["retry_after_seconds"]
    assert 1 <= int(r.headers["retry-after"]) <= int(metadata["window_seconds"])
    assert metadata["limit"] in body["message"]
    return metadata


async def test_fresh_subjects_from_one_address_share_its_limit(settings: Settings) -> None:
    """Minting a guest (or any token) per request no longer buys a fresh allowance."""
    config = GatewayConfig(rate_limit_per_minute=100, ip_rate_limit_per_minute=3, guest_tokens_per_ip_per_hour=100)
    async with gateway(settings, config) as app, client(app, an_ip()) as http:

        async def as_a_new_guest() -> httpx.Response:
            minted = await http.post("/v1/auth/guest")
            if minted.status_code != 200:
                return minted
            return await http.get(NOWHERE, headers={"Authorization": f"Bearer {minted.json()['token']}"})

        statuses, refused = await until_refused(as_a_new_guest, 8)
    assert refused is not None, statuses
    assert refusal(refused) == {
        "limit": "ip",
        "limit_requests": "3",
        "window_seconds": "60",
        "retry_after_seconds": refused.headers["retry-after"],
    }


async def test_one_subject_is_limited_whatever_its_address(settings: Settings) -> None:
    config = GatewayConfig(rate_limit_per_minute=2, ip_rate_limit_per_minute=100)
    auth = token(settings)
    async with gateway(settings, config) as app:
        clients = [client(app, an_ip()) for _ in range(6)]
        try:
            sends = iter(clients)
            statuses, refused = await until_refused(lambda: next(sends).get(NOWHERE, headers=auth), 6)
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))
    assert statuses[0] == 404
    assert refused is not None, statuses
    assert refusal(refused)["limit"] == "subject"


async def test_bad_tokens_are_limited_by_address(settings: Settings) -> None:
    config = GatewayConfig(rate_limit_per_minute=2)
    async with gateway(settings, config) as app, client(app, an_ip()) as http:
        statuses, refused = await until_refused(
            lambda: http.get(NOWHERE, headers={"Authorization": f"Bearer {unique('forged')}"}), 6
        )
    assert statuses[0] == 401
    assert refused is not None, statuses
    assert refusal(refused)["limit"] == "subject"


async def test_guest_tokens_are_limited_per_address(settings: Settings) -> None:
    config = GatewayConfig(rate_limit_per_minute=0, guest_tokens_per_ip_per_hour=2)
    mine, neighbour = an_ip(), an_ip()
    async with gateway(settings, config) as app:
        async with client(app, mine) as http:
            statuses, refused = await until_refused(lambda: http.post("/v1/auth/guest"), 6)
        async with client(app, neighbour) as http:
            other = await http.post("/v1/auth/guest")
    assert statuses[0] == 200
    assert refused is not None, statuses
    limit = refusal(refused)
    assert (limit["limit"], limit["limit_requests"], limit["window_seconds"]) == ("guest_tokens", "2", "3600")
    assert other.status_code == 200


async def test_a_forged_forwarded_for_from_an_untrusted_peer_buys_no_fresh_bucket(settings: Settings) -> None:
    config = GatewayConfig(rate_limit_per_minute=0, ip_rate_limit_per_minute=2)
    async with gateway(settings, config) as app, client(app, an_ip()) as http:
        statuses, refused = await until_refused(
            lambda: http.get(NOWHERE, headers={**token(settings), "X-Forwarded-For": an_ip()}), 6
        )
    assert refused is not None, statuses
    assert refusal(refused)["limit"] == "ip"


async def test_behind_trusted_proxies_each_client_has_its_own_bucket(settings: Settings) -> None:
    config = GatewayConfig(
        rate_limit_per_minute=0,
        ip_rate_limit_per_minute=2,
        trusted_proxies=TrustedProxies(parse_networks("10.0.0.0/8")),
    )
    alice, bob = an_ip(), an_ip()
    async with gateway(settings, config) as app, client(app, "10.0.0.2") as lb1, client(app, "10.0.0.3") as lb2:
        # Alice through both load balancers, forging an address of her own on the left each time.
        sends = iter([lb1, lb2] * 3)
        statuses, refused = await until_refused(
            lambda: next(sends).get(
                NOWHERE, headers={**token(settings), "X-Forwarded-For": f"{an_ip()}, {alice}, 10.0.0.9"}
            ),
            6,
        )
        bob_r = await lb1.get(NOWHERE, headers={**token(settings), "X-Forwarded-For": bob})
    assert refused is not None, statuses
    assert refusal(refused)["limit"] == "ip"
    assert bob_r.status_code == 404


async def test_webhooks_are_not_rate_limited(settings: Settings) -> None:
    """A payment provider's notifications are never turned away (it would retry them later, late)."""
    config = GatewayConfig(rate_limit_per_minute=1, ip_rate_limit_per_minute=1, guest_tokens_per_ip_per_hour=1)
    async with gateway(settings, config) as app, client(app, an_ip()) as http:
        codes = [
            (
                await http.post(
                    "/v1/payments/webhooks/sandbox", content=b"{}", headers={webhook_signature.SIGNATURE_HEADER: "x"}
                )
            ).status_code
            for _ in range(3)
        ]
    assert codes == [400, 400, 400]


async def test_over_real_http_a_forwarded_for_from_loopback_is_not_believed(settings: Settings) -> None:
    """uvicorn's own proxy-header handling (which trusts 127.0.0.1) is off: only gateway.client_ip decides."""
    (port,) = free_ports(1)
    gw_settings = dataclasses.replace(settings, addrs={**settings.addrs, "gateway": f"127.0.0.1:{port}"})
    config = uvicorn_config(gw_settings, GatewayConfig(rate_limit_per_minute=0, ip_rate_limit_per_minute=2))
    config.loop = "none"  # already inside the test's event loop
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "uvicorn exited during start-up"
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            statuses, refused = await until_refused(
                lambda: http.get(NOWHERE, headers={**token(settings), "X-Forwarded-For": an_ip()}), 6
            )
    finally:
        server.should_exit = True
        await task
    assert refused is not None, statuses
    assert refusal(refused)["limit"] == "ip"
