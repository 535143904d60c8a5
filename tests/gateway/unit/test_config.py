"""KASSA_RATE_LIMIT_PER_MINUTE and the listen address are validated at start-up, not at the first request."""

from __future__ import annotations

import pytest

from gateway.config import GatewayConfig
from gateway.server import split_addr, uvicorn_config
from infra.config import ConfigError, Settings

pytestmark = pytest.mark.unit


def test_default_rate_limit_is_600_per_minute() -> None:
    assert GatewayConfig.from_env({}).rate_limit_per_minute == 600


@pytest.mark.parametrize(("raw", "limit"), [("0", 0), ("25", 25), ("", 600)])
def test_rate_limit_from_env(raw: str, limit: int) -> None:
    assert GatewayConfig.from_env({"KASSA_RATE_LIMIT_PER_MINUTE": raw}).rate_limit_per_minute == limit


@pytest.mark.parametrize("raw", ["-1", "ten", "1.5"])
def test_bad_rate_limit_refuses_to_start(raw: str) -> None:
    with pytest.raises(ConfigError):
        GatewayConfig.from_env({"KASSA_RATE_LIMIT_PER_MINUTE": raw})


@pytest.mark.parametrize(
    ("addr", "expected"),
    [("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::1]:9000", ("::1", 9000)), (":8081", ("127.0.0.1", 8081))],
)
def test_split_addr(addr: str, expected: tuple[str, int]) -> None:
    assert split_addr(addr) == expected


@pytest.mark.parametrize("addr", ["localhost", "127.0.0.1:http"])
def test_bad_addr_is_a_config_error(addr: str) -> None:
    with pytest.raises(ConfigError):
        split_addr(addr)


def test_uvicorn_runs_uvloop_httptools_without_access_log_on_the_gateway_addr() -> None:
    config = uvicorn_config(Settings.from_env({"KASSA_GATEWAY_ADDR": "127.0.0.1:18080"}), GatewayConfig())
    assert (config.host, config.port) == ("127.0.0.1", 18080)
    assert (config.loop, config.http, config.access_log, config.lifespan) == ("uvloop", "httptools", False, "on")
    assert config.timeout_graceful_shutdown is not None
