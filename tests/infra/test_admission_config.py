"""Admission settings from the environment: the policy they build, and nonsense refused at start-up."""

from __future__ import annotations

import pytest

from infra.config import ConfigError, Settings

pytestmark = pytest.mark.unit

DEV = {"KASSA_ENV": "development"}


def test_defaults_build_the_documented_policy() -> None:
    p = Settings.from_env(DEV).admission_policy(frozenset({"new"}))
    assert (p.limit, p.cap, p.max_limit, p.target_s, p.interval_s, p.max_wait_s) == (16, 128, 32, 0.5, 1.0, 5.0)
    assert p.latency_target_s == 2.5  # half the default 5 s deadline of a call
    assert p.new_work == frozenset({"new"})


def test_the_latency_target_follows_the_rpc_deadline_unless_set() -> None:
    assert (
        Settings.from_env({**DEV, "KASSA_RPC_TIMEOUT_SECONDS": "8"}).admission_policy(frozenset()).latency_target_s == 4
    )
    fixed = Settings.from_env({**DEV, "KASSA_ADMISSION_LATENCY_TARGET_MS": "0"}).admission_policy(frozenset())
    assert (fixed.latency_target_s, fixed.max_limit) == (0, 16)  # 0: KASSA_MAX_IN_FLIGHT is a fixed limit


def test_every_setting_is_read() -> None:
    env = {
        **DEV,
        "KASSA_MAX_IN_FLIGHT": "24",
        "KASSA_ADMISSION_TARGET_MS": "250",
        "KASSA_ADMISSION_INTERVAL_MS": "2000",
        "KASSA_ADMISSION_MAX_WAIT_MS": "8000",
        "KASSA_ADMISSION_HARD_LIMIT": "100",
        "KASSA_ADMISSION_LATENCY_TARGET_MS": "1500",
    }
    p = Settings.from_env(env).admission_policy(frozenset())
    assert (p.limit, p.cap, p.max_limit, p.target_s, p.interval_s, p.max_wait_s) == (24, 100, 25, 0.25, 2.0, 8.0)
    assert p.latency_target_s == 1.5


def test_zero_turns_admission_control_off() -> None:
    assert Settings.from_env({**DEV, "KASSA_MAX_IN_FLIGHT": "0"}).admission_policy(frozenset()).limit == 0


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KASSA_MAX_IN_FLIGHT": "-1"}, "KASSA_MAX_IN_FLIGHT"),
        ({"KASSA_MAX_IN_FLIGHT": "lots"}, "KASSA_MAX_IN_FLIGHT"),
        ({"KASSA_ADMISSION_TARGET_MS": "0"}, "KASSA_ADMISSION_TARGET_MS"),
        ({"KASSA_ADMISSION_INTERVAL_MS": "-5"}, "KASSA_ADMISSION_INTERVAL_MS"),
        ({"KASSA_ADMISSION_TARGET_MS": "900", "KASSA_ADMISSION_MAX_WAIT_MS": "800"}, "KASSA_ADMISSION_MAX_WAIT_MS"),
        ({"KASSA_ADMISSION_HARD_LIMIT": "8"}, "KASSA_ADMISSION_HARD_LIMIT"),
        ({"KASSA_ADMISSION_HARD_LIMIT": "-1"}, "KASSA_ADMISSION_HARD_LIMIT"),
        ({"KASSA_ADMISSION_LATENCY_TARGET_MS": "-1"}, "KASSA_ADMISSION_LATENCY_TARGET_MS"),
    ],
)
def test_nonsense_is_refused_at_start_up_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env({**DEV, **env})
