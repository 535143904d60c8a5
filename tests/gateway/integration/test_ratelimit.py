"""The fixed-window limiter against the stack's real Redis: per bucket, per window, several at once, fail-open."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from helpers import unique
from redis.asyncio import Redis

from devstack.localstack import StackEndpoints, free_ports
from gateway.ratelimit import Limit, RateLimiter

pytestmark = pytest.mark.integration

T0 = 1_699_999_990.0  # 10 s into a minute window (1_699_999_980 is a multiple of 60), 790 s into an hour
PER_MINUTE = Limit("subject", 2, 60)


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
    limiter = RateLimiter(redis, prefix=unique("rl"), clock=clock)
    first, second, third = [await limiter.hit((PER_MINUTE, "a")) for _ in range(3)]
    assert (first.allowed, second.allowed, third.allowed) == (True, True, False)
    assert (first.remaining, second.remaining, third.remaining) == (1, 0, 0)
    assert third.retry_after_seconds == 50
    assert third.limit == PER_MINUTE
    assert (await limiter.hit((PER_MINUTE, "b"))).allowed
    clock.now = T0 + 60
    assert (await limiter.hit((PER_MINUTE, "a"))).allowed


async def test_a_request_counts_in_every_bucket_and_the_refusal_names_the_one_that_is_full(redis: Redis) -> None:
    limiter = RateLimiter(redis, prefix=unique("rl"), clock=Clock(T0))
    ip = Limit("ip", 3, 60)
    subjects = [f"guest-{i}" for i in range(4)]
    decisions = [await limiter.hit((ip, "192.0.2.1"), (PER_MINUTE, s)) for s in subjects]
    # Each subject is fresh, but they share one address: the fourth is over the IP's limit.
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[3].limit == ip


async def test_when_several_buckets_are_full_the_longest_wait_is_given(redis: Redis) -> None:
    limiter = RateLimiter(redis, prefix=unique("rl"), clock=Clock(T0))
    hourly = Limit("guest_tokens", 1, 3600)
    await limiter.hit((PER_MINUTE, "ip"), (hourly, "ip"))
    await limiter.hit((PER_MINUTE, "ip"), (hourly, "ip"))
    refused = await limiter.hit((PER_MINUTE, "ip"), (hourly, "ip"))
    assert not refused.allowed
    assert refused.limit == hourly
    assert refused.retry_after_seconds == 3600 - 790


async def test_limits_of_the_same_caller_count_apart(redis: Redis) -> None:
    limiter = RateLimiter(redis, prefix=unique("rl"), clock=Clock(T0))
    other = Limit("guest_tokens", 2, 60)
    for _ in range(2):
        assert (await limiter.hit((PER_MINUTE, "x"))).allowed
    assert (await limiter.hit((other, "x"))).allowed


async def test_window_keys_expire(redis: Redis) -> None:
    prefix = unique("rl")
    await RateLimiter(redis, prefix=prefix, clock=Clock(T0)).hit((Limit("ip", 5, 60), "a"), (Limit("g", 5, 3600), "a"))
    ttls = sorted([await redis.ttl(k) async for k in redis.scan_iter(match=f"{prefix}:*")])
    assert len(ttls) == 2
    assert 0 < ttls[0] <= 61
    assert 61 < ttls[1] <= 3601


async def test_a_hit_is_one_command_however_many_buckets(redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """One EVALSHA (INCR + EXPIRE of every bucket inside it), not MULTI, 2 commands per bucket and EXEC."""
    limiter = RateLimiter(redis, prefix=unique("rl"), clock=Clock(T0))
    await limiter.hit((PER_MINUTE, "warm"))  # the script is loaded on first use
    sent: list[str] = []
    execute = redis.execute_command

    async def counting(*args: object, **options: object) -> object:
        sent.append(str(args[0]))
        return await execute(*args, **options)

    monkeypatch.setattr(redis, "execute_command", counting)
    decision = await limiter.hit((Limit("ip", 5, 60), "192.0.2.9"), (PER_MINUTE, "sub:c"), (Limit("g", 5, 3600), "ip"))
    assert decision.allowed and decision.remaining == 1
    assert sent == ["EVALSHA"]


async def test_a_redis_that_lost_the_script_gets_it_again(redis: Redis) -> None:
    """A restarted Redis has no scripts: the limiter loads it again and counts on, never failing open for that."""
    limiter = RateLimiter(redis, prefix=unique("rl"), clock=Clock(T0))
    assert (await limiter.hit((PER_MINUTE, "a"))).remaining == 1
    await redis.script_flush()
    assert (await limiter.hit((PER_MINUTE, "a"))).remaining == 0
    assert not (await limiter.hit((PER_MINUTE, "a"))).allowed


async def test_no_bucket_is_allowed_without_a_round_trip() -> None:
    (port,) = free_ports(1)
    client = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        assert (await RateLimiter(client).hit()).allowed
    finally:
        await client.aclose()


async def test_redis_down_allows_requests() -> None:
    (port,) = free_ports(1)
    client = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        limiter = RateLimiter(client, clock=Clock(T0))
        decisions = [await limiter.hit((Limit("subject", 1), "a")) for _ in range(3)]
    finally:
        await client.aclose()
    assert all(d.allowed for d in decisions)


@pytest.mark.parametrize(("requests", "window"), [(0, 60), (-1, 60), (5, 0)])
def test_a_zero_limit_is_not_a_limit(requests: int, window: int) -> None:
    with pytest.raises(ValueError):
        Limit("ip", requests, window)
