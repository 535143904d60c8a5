"""The knobs bootstrap derives from the settings, and the ones it refuses."""

from __future__ import annotations

import pytest

from checkout.bootstrap import policy_from
from infra.config import ConfigError, Settings

pytestmark = pytest.mark.unit


def _settings(**env: str) -> Settings:
    return Settings.from_env({"KASSA_DATABASE_URL": "postgresql://x", **env})


def test_the_saga_lease_is_derived_from_the_rpc_deadline_far_beyond_any_step() -> None:
    policy = policy_from(_settings())
    assert policy.recovery_after_seconds == 120
    assert policy.step_budget_seconds == 3 * (5.0 + 2.0)
    assert policy_from(_settings(KASSA_RPC_TIMEOUT_SECONDS="2")).recovery_after_seconds == 48
    assert policy_from(_settings(KASSA_CHECKOUT_RECOVERY_AFTER_SECONDS="300")).recovery_after_seconds == 300


def test_a_lease_one_step_could_outlast_is_refused() -> None:
    with pytest.raises(ConfigError, match="KASSA_CHECKOUT_RECOVERY_AFTER_SECONDS"):
        policy_from(_settings(KASSA_CHECKOUT_RECOVERY_AFTER_SECONDS="30"))
