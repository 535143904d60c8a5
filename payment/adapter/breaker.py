"""A circuit breaker around a payment provider (purgatory), so a failing processor is not waited on.

Only an unknown outcome (timeout, connection failure, 5xx: ``ProviderUnavailable``) counts as a
failure; a decline or a refused request is the provider working. After ``threshold`` failures in a
row the breaker opens and every call fails fast with :class:`ProviderCircuitOpen` (nothing is
sent) for ``reset_seconds``; then calls are let through as probes (half-open), and the first that
succeeds closes it again, the first that fails opens it for another period.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OPENED, OpenedState

from payment.biz.ports import PaymentProvider
from payment.model.provider import (
    IntentRequest,
    ProviderCircuitOpen,
    ProviderEvent,
    ProviderIntent,
    ProviderRefund,
    ProviderUnavailable,
)

__all__ = ["BreakerPolicy", "GuardedProvider"]

R = TypeVar("R")


@dataclass(frozen=True)
class BreakerPolicy:
    threshold: int = 5
    reset_seconds: float = 30.0


def _not_a_failure(exc: BaseException) -> bool:
    return not isinstance(exc, ProviderUnavailable)


class GuardedProvider:
    """``provider`` behind its own breaker; the same port, so biz code cannot tell the difference."""

    def __init__(self, provider: PaymentProvider, policy: BreakerPolicy) -> None:
        self.name = provider.name
        self._inner = provider
        self._policy = policy
        self._factory = AsyncCircuitBreakerFactory(
            default_threshold=policy.threshold,
            default_ttl=policy.reset_seconds,
            exclude=[(BaseException, _not_a_failure)],
        )
        self._state = "closed"
        self._opened_at: float | None = None

    @property
    def state(self) -> str:
        """closed, opened or half-opened (as the breaker last recorded it)."""
        return self._state

    def available(self) -> bool:
        """False while open; True again once the reset period is over (the next call is a probe)."""
        if self._state != OPENED or self._opened_at is None:
            return True
        return time.time() > self._opened_at + self._policy.reset_seconds

    async def _guarded(self, call: Callable[[], Awaitable[R]]) -> R:
        breaker = await self._factory.get_breaker(self.name)
        try:
            async with breaker:
                return await call()
        except OpenedState as exc:
            raise ProviderCircuitOpen("circuit_open", f"{self.name} is failing; not called") from exc
        finally:
            self._state = breaker.context.state
            self._opened_at = breaker.context.opened_at

    async def create_intent(self, request: IntentRequest, idempotency_key: str) -> ProviderIntent:
        return await self._guarded(lambda: self._inner.create_intent(request, idempotency_key))

    async def capture(
        self, intent_id: str, amount_minor: int, idempotency_key: str, metadata: Mapping[str, str] | None = None
    ) -> ProviderIntent:
        return await self._guarded(lambda: self._inner.capture(intent_id, amount_minor, idempotency_key, metadata))

    async def cancel(self, intent_id: str, idempotency_key: str) -> ProviderIntent:
        return await self._guarded(lambda: self._inner.cancel(intent_id, idempotency_key))

    async def refund(self, intent_id: str, amount_minor: int, idempotency_key: str) -> ProviderRefund:
        return await self._guarded(lambda: self._inner.refund(intent_id, amount_minor, idempotency_key))

    async def get_intent(self, intent_id: str) -> ProviderIntent:
        return await self._guarded(lambda: self._inner.get_intent(intent_id))

    async def find_intent(self, idempotency_key: str) -> ProviderIntent | None:
        return await self._guarded(lambda: self._inner.find_intent(idempotency_key))

    async def list_intents(
        self, created_after: int, created_until: int, starting_after: str | None, limit: int
    ) -> tuple[list[ProviderIntent], bool]:
        return await self._guarded(
            lambda: self._inner.list_intents(created_after, created_until, starting_after, limit)
        )

    def parse_event(self, payload: bytes, signature: str) -> ProviderEvent:
        return self._inner.parse_event(payload, signature)
