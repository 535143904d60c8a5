"""Bounded retries of idempotent calls (exponential backoff with jitter), for transient failures only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from kernel.errors import Unavailable

__all__ = ["RetryPolicy", "retrying"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    initial_seconds: float = 0.1
    max_seconds: float = 2.0


async def retrying(
    policy: RetryPolicy,
    call: Callable[[], Awaitable[T]],
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = Unavailable,
) -> T:
    """Run ``call`` until it succeeds or ``policy.attempts`` are spent; only ``retry_on`` (Unavailable) is retried.

    A refusal (declined, invalid, expired) is an answer, not a glitch: retrying it cannot help.
    """
    async for attempt in AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait_random_exponential(multiplier=policy.initial_seconds, max=policy.max_seconds),
        retry=retry_if_exception_type(retry_on),
        reraise=True,
    ):
        with attempt:
            return await call()
    raise AssertionError("unreachable")  # pragma: no cover
