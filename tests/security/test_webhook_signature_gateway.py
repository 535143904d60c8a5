"""POST /v1/payments/webhooks/{provider} with hostile signature headers: 400 naming the field, never 5xx.

The signature is checked before anything is forwarded, so payment points at a closed port here: a
request that got past the check would come back 503, not 400.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from devstack.localstack import free_ports
from gateway.app import create_app
from gateway.config import GatewayConfig
from infra import webhook_signature
from infra.config import Settings

pytestmark = pytest.mark.integration

URL = "/v1/payments/webhooks/sandbox"
BODY = json.dumps({"id": "evt_1", "type": "payment_intent.succeeded"}).encode()


@pytest_asyncio.fixture(loop_scope="session")
async def client(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    (dead,) = free_ports(1)
    gw_settings = dataclasses.replace(settings, addrs={**settings.addrs, "payment": f"127.0.0.1:{dead}"})
    app = create_app(gw_settings, GatewayConfig(rate_limit_per_minute=0))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http,
    ):
        yield http, gw_settings


def _valid(settings: Settings) -> str:
    return webhook_signature.sign(settings.webhook_secret, BODY)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda sig: sig[:-2].encode() + "é".encode(), id="utf8-in-mac"),
        pytest.param(lambda sig: sig[:-1].encode() + b"\xff", id="latin1-byte"),
        pytest.param(lambda sig: sig.replace("t=", "t=\u00b2").encode(), id="superscript-ts"),
        pytest.param(lambda sig: ("t=" + "9" * 5000 + ",v1=" + "0" * 64).encode(), id="huge-ts"),
        pytest.param(lambda sig: (sig + ",v1=" + "a" * 60_000).encode(), id="huge-header"),
        pytest.param(lambda sig: sig.split(",")[0].encode(), id="no-mac"),
        pytest.param(lambda sig: sig.split(",")[1].encode(), id="no-timestamp"),
        pytest.param(lambda sig: b"", id="empty"),
    ],
)
async def test_a_hostile_signature_header_is_a_clean_400(
    client: tuple[httpx.AsyncClient, Settings], mangle: object
) -> None:
    http, settings = client
    header = mangle(_valid(settings))  # type: ignore[operator]
    r = await http.post(URL, content=BODY, headers=[(webhook_signature.SIGNATURE_HEADER.encode(), header)])
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == 3  # INVALID_ARGUMENT
    (detail,) = body["details"]
    assert detail["metadata"]["field"] == "signature"


async def test_a_valid_signature_gets_past_the_check(client: tuple[httpx.AsyncClient, Settings]) -> None:
    http, settings = client
    r = await http.post(URL, content=BODY, headers={webhook_signature.SIGNATURE_HEADER: _valid(settings)})
    assert r.status_code == 503  # forwarded to a payment service that isn't there
