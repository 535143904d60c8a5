"""KASSA_RATE_LIMIT_PER_MINUTE and the listen address are validated at start-up, not at the first request."""

from __future__ import annotations

import logging

import pytest
import uvicorn

from gateway import server
from gateway.app import checkout_policy
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


def test_new_checkouts_are_admitted_by_16_in_progress_and_3_s_idle_by_default() -> None:
    config = GatewayConfig.from_env({})
    assert (config.checkouts_in_progress, config.checkout_idle_ms) == (16, 3000)
    tuned = GatewayConfig.from_env(
        {"KASSA_GATEWAY_CHECKOUTS_IN_PROGRESS": "24", "KASSA_GATEWAY_CHECKOUT_IDLE_MS": "1500"}
    )
    assert (tuned.checkouts_in_progress, tuned.checkout_idle_ms) == (24, 1500)


@pytest.mark.parametrize(
    "env",
    [
        {"KASSA_GATEWAY_CHECKOUTS_IN_PROGRESS": "-1"},
        {"KASSA_GATEWAY_CHECKOUTS_IN_PROGRESS": "many"},
        {"KASSA_GATEWAY_CHECKOUT_IDLE_MS": "0"},
    ],
)
def test_bad_admission_settings_refuse_to_start(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        GatewayConfig.from_env(env)


def test_the_gateway_admission_takes_the_queue_settings_of_the_services_and_max_in_flight_0_turns_it_off() -> None:
    settings = Settings.from_env({"KASSA_ADMISSION_MAX_WAIT_MS": "4000", "KASSA_ADMISSION_LATENCY_TARGET_MS": "900"})
    policy = checkout_policy(settings, GatewayConfig(checkouts_in_progress=12, checkout_idle_ms=2000))
    assert (policy.limit, policy.idle_s, policy.latency_target_s) == (12, 2.0, 0.9)
    assert policy.max_wait_s == 8.0  # twice the services': the gateway's waiters are served, not refused
    assert policy.cap == 96
    off = checkout_policy(Settings.from_env({"KASSA_MAX_IN_FLIGHT": "0"}), GatewayConfig())
    assert off.limit == 0


def test_the_gateway_holds_half_of_checkouts_cap_in_checkouts_and_warns_when_its_own_limit_needs_more(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The checkouts in progress a gateway lets in past its limit (each with up to two calls in flight) stay within
    what checkout refuses even work under way at: 8 x KASSA_MAX_IN_FLIGHT, or KASSA_ADMISSION_HARD_LIMIT. The room is
    never less than twice the adaptive limit's ceiling, with a warning naming the settings when that is more."""
    assert checkout_policy(Settings.from_env({}), GatewayConfig()).room == 64  # 8 x 16 / 2
    assert checkout_policy(Settings.from_env({"KASSA_ADMISSION_HARD_LIMIT": "400"}), GatewayConfig()).room == 200
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="kassa.gateway"):
        tight = checkout_policy(Settings.from_env({"KASSA_MAX_IN_FLIGHT": "4"}), GatewayConfig())
    assert tight.room == 64  # 4 x the limit of 16: the queue keeps room for a flash sale's crowd
    assert "KASSA_GATEWAY_CHECKOUTS_IN_PROGRESS=16" in caplog.text and "lower this to 4" in caplog.text


def test_the_gateway_settles_its_heap_before_it_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    """infra.heap.settle runs once, after the app is built and before uvicorn serves it."""
    calls: list[str] = []
    monkeypatch.setattr(server, "setup_logging", lambda _name: None)
    monkeypatch.setattr(server.tracing, "setup", lambda _name: None)
    monkeypatch.setattr(server.heap, "settle", lambda: calls.append("settle"))
    monkeypatch.setattr(uvicorn.Server, "run", lambda _self, sockets=None: calls.append("serve"))
    for name, value in {
        "KASSA_ENV": "development",
        "KASSA_GATEWAY_ADDR": "127.0.0.1:0",
        "KASSA_REDIS_URL": "redis://127.0.0.1:1/0",
    }.items():
        monkeypatch.setenv(name, value)
    server.main()
    assert calls == ["settle", "serve"]
