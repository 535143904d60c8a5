"""The circuit breaker around a provider, the provider registry and KASSA_PAYMENT_PROVIDERS parsing."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping

import pytest

from infra.config import ConfigError, Settings
from kernel.errors import Unavailable
from payment.adapter.breaker import BreakerPolicy, GuardedProvider
from payment.biz.providers import Providers
from payment.bootstrap import breaker_policy, provider_urls
from payment.model.provider import (
    IntentRequest,
    IntentStatus,
    ProviderCircuitOpen,
    ProviderDeclined,
    ProviderEvent,
    ProviderIntent,
    ProviderRefund,
    ProviderUnavailable,
)

pytestmark = pytest.mark.unit


class ScriptedProvider:
    """Answers each get_intent with the next scripted outcome and counts the calls that reached it."""

    def __init__(self, name: str = "p") -> None:
        self.name = name
        self.calls = 0
        self.fail_with: Exception | None = None

    def available(self) -> bool:
        return True

    async def get_intent(self, intent_id: str) -> ProviderIntent:
        self.calls += 1
        if self.fail_with is not None:
            raise self.fail_with
        return ProviderIntent(intent_id, IntentStatus.REQUIRES_CAPTURE, 100)

    async def create_intent(self, request: IntentRequest, idempotency_key: str) -> ProviderIntent:
        raise NotImplementedError

    async def capture(
        self, intent_id: str, amount_minor: int, idempotency_key: str, metadata: Mapping[str, str] | None = None
    ) -> ProviderIntent:
        raise NotImplementedError

    async def cancel(self, intent_id: str, idempotency_key: str) -> ProviderIntent:
        raise NotImplementedError

    async def refund(self, intent_id: str, amount_minor: int, idempotency_key: str) -> ProviderRefund:
        raise NotImplementedError

    async def find_intent(self, idempotency_key: str) -> ProviderIntent | None:
        raise NotImplementedError

    def parse_event(self, payload: bytes, signature: str) -> ProviderEvent:
        raise NotImplementedError


async def test_the_breaker_opens_after_the_threshold_fails_fast_and_closes_after_a_good_probe() -> None:
    inner = ScriptedProvider()
    guarded = GuardedProvider(inner, BreakerPolicy(threshold=3, reset_seconds=0.2))
    inner.fail_with = ProviderUnavailable("timeout", "slow")
    for _ in range(3):
        with pytest.raises(ProviderUnavailable) as err:
            await guarded.get_intent("pi_1")
        assert not isinstance(err.value, ProviderCircuitOpen)
    assert not guarded.available()
    with pytest.raises(ProviderCircuitOpen):
        await guarded.get_intent("pi_1")
    assert inner.calls == 3  # the open breaker did not call the provider

    inner.fail_with = None
    deadline = time.monotonic() + 5
    while not guarded.available():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert (await guarded.get_intent("pi_1")).intent_id == "pi_1"
    assert guarded.state == "closed" and inner.calls == 4


async def test_declines_and_refusals_are_not_failures() -> None:
    inner = ScriptedProvider()
    guarded = GuardedProvider(inner, BreakerPolicy(threshold=1, reset_seconds=60))
    inner.fail_with = ProviderDeclined("card_declined", "no")
    for _ in range(3):
        with pytest.raises(ProviderDeclined):
            await guarded.get_intent("pi_1")
    assert guarded.available() and inner.calls == 3


def test_new_authorizations_go_to_the_first_available_provider() -> None:
    primary, backup = ScriptedProvider("sandbox"), ScriptedProvider("backup")
    providers = Providers([primary, backup])
    assert providers.for_authorization() is primary
    primary.available = lambda: False  # type: ignore[method-assign]
    assert providers.for_authorization() is backup
    backup.available = lambda: False  # type: ignore[method-assign]
    assert providers.for_authorization() is None
    assert providers.holding("backup") is backup
    with pytest.raises(Unavailable) as err:
        providers.holding("gone")
    assert err.value.reason == "PAYMENT_PROVIDER_UNAVAILABLE"


def test_provider_urls_and_breaker_policy_from_configuration() -> None:
    base = Settings.from_env({})
    assert provider_urls(base) == [("sandbox", base.sandbox_url)]
    two = dataclasses.replace(base, payment_providers="sandbox=http://127.0.0.1:8090, backup=http://127.0.0.1:8091")
    assert provider_urls(two) == [("sandbox", "http://127.0.0.1:8090"), ("backup", "http://127.0.0.1:8091")]
    for bad in ("sandbox", "sandbox=ftp://x", "a=http://x,a=http://y"):
        with pytest.raises(ConfigError):
            provider_urls(dataclasses.replace(base, payment_providers=bad))
    assert breaker_policy({}) == BreakerPolicy(5, 30.0)
    assert breaker_policy({"KASSA_PAYMENT_BREAKER_THRESHOLD": "2", "KASSA_PAYMENT_BREAKER_RESET_SECONDS": "1.5"}) == (
        BreakerPolicy(2, 1.5)
    )
    with pytest.raises(ConfigError):
        breaker_policy({"KASSA_PAYMENT_BREAKER_THRESHOLD": "0"})
