"""The fixed-window limiter against the stack's real Redis: per caller, per window, fail-open."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from helpers import unique
from redis.asyncio import Redis

from gateway.ratelimit import RateLimiter
from infra.localstack import StackEndpoints, free_ports

pytestmark = pytest.mark.integration

T0 = 1_699_999_990.0  # 10 s into a minute window (1_699_999_980 is a multiple of 60)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture(loop_scope="session")
async def redis(stack: StackEndpoints) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_limit_is_per_caller_and_per_window(redis: Redis) -> None:
    clock = Clock(T0)
    limiter = RateLimiter(redis, 2, prefix=unique("rl"), clock=clock)
    first, second, third = [await limiter.hit("sub:a") for _ in range(3)]
    assert (first.allowed, second.allowed, third.allowed) == (True, True, False)
    assert (first.remaining, second.remaining, third.remaining) == (1, 0, 0)
    assert third.retry_after_seconds == 50
    assert (await limiter.hit("sub:b")).allowed
    clock.now = T0 + 60
    assert (await limiter.hit("sub:a")).allowed


async def test_window_keys_expire(redis: Redis) -> None:
    prefix = unique("rl")
    await RateLimiter(redis, 5, prefix=prefix, clock=Clock(T0)).hit("sub:a")
    keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
    assert len(keys) == 1
    assert 0 < await redis.ttl(keys[0]) <= 61


async def test_redis_down_allows_requests() -> None:
    (port,) = free_ports(1)
    client = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        limiter = RateLimiter(client, 1, clock=Clock(T0))
        decisions = [await limiter.hit("sub:a") for _ in range(3)]
    finally:
        await client.aclose()
    assert all(d.allowed for d in decisions)


def test_a_zero_limit_is_not_a_limiter() -> None:
    with pytest.raises(ValueError):
        RateLimiter(Redis(), 0)
