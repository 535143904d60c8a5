"""CORS for web clients (KASSA_CORS_ORIGINS): off by default, preflights answered for the configured origins only."""

from __future__ import annotations

import httpx
import pytest

from gateway.app import create_app
from gateway.config import GatewayConfig
from infra.config import ConfigError, Settings

pytestmark = pytest.mark.unit

SHOP = "https://shop.example.com"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
}


def _client(config: GatewayConfig) -> httpx.AsyncClient:
    app = create_app(Settings.from_env({"KASSA_ENV": "development"}), config)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


async def test_a_preflight_from_a_configured_origin_is_allowed_with_the_headers_a_checkout_sends() -> None:
    async with _client(GatewayConfig(rate_limit_per_minute=0, cors_origins=(SHOP,))) as client:
        answer = await client.options("/v1/checkout/confirm", headers={"Origin": SHOP, **PREFLIGHT})
        simple = await client.get("/healthz", headers={"Origin": SHOP})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == SHOP
    assert "POST" in answer.headers["access-control-allow-methods"]
    allowed = answer.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "idempotency-key"} <= {h.strip() for h in allowed.split(",")}
    assert "access-control-allow-credentials" not in answer.headers
    assert simple.headers["access-control-allow-origin"] == SHOP
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


async def test_a_preflight_from_another_origin_gets_no_allow_origin() -> None:
    async with _client(GatewayConfig(rate_limit_per_minute=0, cors_origins=(SHOP,))) as client:
        answer = await client.options("/v1/checkout/confirm", headers={"Origin": "https://evil.example", **PREFLIGHT})
        simple = await client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert answer.status_code == 400
    assert "access-control-allow-origin" not in answer.headers
    assert "access-control-allow-origin" not in simple.headers


async def test_cors_is_off_unless_configured() -> None:
    async with _client(GatewayConfig(rate_limit_per_minute=0)) as client:
        answer = await client.options("/v1/checkout/confirm", headers={"Origin": SHOP, **PREFLIGHT})
        simple = await client.get("/healthz", headers={"Origin": SHOP})
    assert "access-control-allow-origin" not in answer.headers
    assert answer.status_code != 200
    assert "access-control-allow-origin" not in simple.headers


def test_origins_come_from_kassa_cors_origins_and_must_be_origins() -> None:
    config = GatewayConfig.from_env({"KASSA_CORS_ORIGINS": f" {SHOP}/, http://localhost:3000 "}, development=True)
    assert config.cors_origins == (SHOP, "http://localhost:3000")
    assert GatewayConfig.from_env({}, development=False).cors_origins == ()
    assert GatewayConfig.from_env({"KASSA_CORS_ORIGINS": "*"}, development=False).cors_origins == ("*",)
    for bad in ("shop.example.com", "ftp://shop.example.com", "https://shop.example.com/checkout"):
        with pytest.raises(ConfigError, match="KASSA_CORS_ORIGINS"):
            GatewayConfig.from_env({"KASSA_CORS_ORIGINS": bad}, development=True)
