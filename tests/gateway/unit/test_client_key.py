"""The client key a request's per-IP limits count under, worked out once per (peer, X-Forwarded-For)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from gateway.app import create_app
from gateway.client_ip import TrustedProxies, parse_networks
from gateway.config import GatewayConfig
from infra.config import Settings

pytestmark = pytest.mark.unit


def _request(peer: str, forwarded: list[str]) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/", "headers": headers, "client": (peer, 1)}
    return Request(scope)


@pytest.fixture
def gateway() -> Any:
    config = GatewayConfig(trusted_proxies=TrustedProxies(parse_networks("10.0.0.0/8")))
    return create_app(Settings.from_env({"KASSA_ENV": "development"}), config).state.gateway


def test_the_same_request_shape_gets_the_same_key_and_another_its_own(gateway: Any) -> None:
    cases = [
        ("192.0.2.1", [], "192.0.2.1"),
        ("192.0.2.1", ["203.0.113.9"], "192.0.2.1"),  # not a trusted proxy: its header is not believed
        ("10.1.2.3", ["203.0.113.9"], "203.0.113.9"),
        ("10.1.2.3", ["198.51.100.7, 10.9.9.9"], "198.51.100.7"),
        ("10.1.2.3", ["garbage"], "10.1.2.3"),
        ("2001:db8::1", [], "2001:db8::/64"),
    ]
    for _ in range(2):  # worked out, then from what was kept
        for peer, forwarded, key in cases:
            assert gateway.client_key(_request(peer, forwarded)) == key


def test_what_is_kept_is_bounded(gateway: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.app._CLIENT_KEYS_KEPT", 3)
    keys = [gateway.client_key(_request(f"192.0.2.{i}", [])) for i in range(10)]
    assert keys == [f"192.0.2.{i}" for i in range(10)]
    assert len(gateway._client_keys) <= 3
