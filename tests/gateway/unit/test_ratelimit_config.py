"""The abuse limits' settings: production defaults, off in development, refused at start-up when malformed."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.config import (
    DEFAULT_GUEST_TOKENS_PER_IP_PER_HOUR,
    DEFAULT_IP_RATE_LIMIT_PER_MINUTE,
    DEFAULT_RATE_LIMIT_PER_MINUTE,
    GatewayConfig,
)
from gateway.server import uvicorn_config
from infra.config import ConfigError, Settings

pytestmark = pytest.mark.unit

IP = "KASSA_GATEWAY_RATE_LIMIT_PER_IP_PER_MINUTE"
GUEST = "KASSA_GATEWAY_GUEST_TOKENS_PER_IP_PER_HOUR"
PROXIES = "KASSA_GATEWAY_TRUSTED_PROXIES"


def test_production_limits_per_ip_and_guest_tokens_by_default() -> None:
    config = GatewayConfig.from_env({})
    assert config.rate_limit_per_minute == DEFAULT_RATE_LIMIT_PER_MINUTE
    assert config.ip_rate_limit_per_minute == DEFAULT_IP_RATE_LIMIT_PER_MINUTE
    assert config.guest_tokens_per_ip_per_hour == DEFAULT_GUEST_TOKENS_PER_IP_PER_HOUR
    assert config.trusted_proxies.networks == ()
    assert GatewayConfig.from_env({"KASSA_ENV": "production"}) == config
    assert GatewayConfig.from_env({}, development=False) == config


def test_development_leaves_the_per_ip_limits_off_unless_set() -> None:
    """The local stack, bench and chaos send every customer from 127.0.0.1."""
    dev = GatewayConfig.from_env({"KASSA_ENV": "development"})
    assert (dev.ip_rate_limit_per_minute, dev.guest_tokens_per_ip_per_hour) == (0, 0)
    assert dev.rate_limit_per_minute == DEFAULT_RATE_LIMIT_PER_MINUTE
    assert GatewayConfig.from_env({}, development=True) == dev
    chosen = GatewayConfig.from_env({IP: "30", GUEST: "3"}, development=True)
    assert (chosen.ip_rate_limit_per_minute, chosen.guest_tokens_per_ip_per_hour) == (30, 3)


def test_zero_turns_a_limit_off() -> None:
    config = GatewayConfig.from_env({IP: "0", GUEST: "0", "KASSA_RATE_LIMIT_PER_MINUTE": "0"})
    assert not config.rate_limited
    assert GatewayConfig.from_env({IP: "0", GUEST: "5", "KASSA_RATE_LIMIT_PER_MINUTE": "0"}).rate_limited


def test_a_config_built_in_code_limits_only_per_subject() -> None:
    config = GatewayConfig()
    assert (config.ip_rate_limit_per_minute, config.guest_tokens_per_ip_per_hour) == (0, 0)
    assert config.rate_limited


@pytest.mark.parametrize("name", [IP, GUEST, "KASSA_RATE_LIMIT_PER_MINUTE"])
@pytest.mark.parametrize("raw", ["-1", "ten", "1.5"])
def test_a_bad_limit_refuses_to_start(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        GatewayConfig.from_env({name: raw})


def test_trusted_proxies_are_cidrs_or_addresses() -> None:
    config = GatewayConfig.from_env({PROXIES: "10.0.0.0/8, 192.0.2.7,2001:db8::/32"})
    assert ipaddress.ip_address("10.20.30.40") in config.trusted_proxies
    assert ipaddress.ip_address("192.0.2.7") in config.trusted_proxies
    assert ipaddress.ip_address("192.0.2.8") not in config.trusted_proxies
    assert ipaddress.ip_address("2001:db8::1") in config.trusted_proxies


@pytest.mark.parametrize("raw", ["10.0.0.0/40", "proxy.internal", "10.0.0.1 10.0.0.2"])
def test_a_bad_trusted_proxy_refuses_to_start(raw: str) -> None:
    with pytest.raises(ConfigError, match=PROXIES):
        GatewayConfig.from_env({PROXIES: raw})


def test_uvicorn_does_not_rewrite_the_client_address_from_proxy_headers() -> None:
    """Its own X-Forwarded-For handling trusts 127.0.0.1 by default; gateway.client_ip decides instead."""
    config = uvicorn_config(Settings.from_env({"KASSA_GATEWAY_ADDR": "127.0.0.1:18080"}), GatewayConfig())
    assert config.proxy_headers is False
