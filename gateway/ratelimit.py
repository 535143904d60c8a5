"""Fixed-window rate limits in Redis: one request counts in several buckets at once, in one round trip.

Why Redis: the gateway runs as several stateless replicas, so the count has to be shared (a limit kept
in each replica's memory would be multiplied by however many replicas a load balancer spreads a client
over). Why fail open: the limits protect the backends from one noisy caller; refusing every checkout
because Redis blinked would turn a cache outage into a full outage.

A request counts in every bucket it belongs to (its client IP's, its subject's, …) and is refused when
any of them is over; the refusal names that limit. Each bucket is ``INCR`` + ``EXPIRE`` of one key per
window, all in one MULTI/EXEC.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

__all__ = ["Decision", "Limit", "RateLimiter"]

log = logging.getLogger("kassa.gateway.ratelimit")


@dataclass(frozen=True)
class Limit:
    """``requests`` per ``window_seconds`` in each bucket; ``name`` is what a refusal calls it."""

    name: str
    requests: int
    window_seconds: int = 60

    def __post_init__(self) -> None:
        if self.requests <= 0 or self.window_seconds <= 0:
            raise ValueError(f"limit {self.name!r} must be positive; leave it out to disable it")


@dataclass(frozen=True)
class Decision:
    """``limit`` is the limit that refused (None when allowed); ``remaining`` the fewest left in any bucket."""

    allowed: bool
    remaining: int
    retry_after_seconds: int
    limit: Limit | None = None


class RateLimiter:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "kassa:gateway:rl",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._clock = clock
        self._warned_minute = -1

    async def hit(self, *buckets: tuple[Limit, str]) -> Decision:
        """Count one request in each ``(limit, caller)`` bucket; allowed when Redis can't be reached."""
        if not buckets:
            return Decision(True, 0, 0)
        now = self._clock()
        windows = [int(now // limit.window_seconds) for limit, _ in buckets]
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for (limit, caller), window in zip(buckets, windows, strict=True):
                    key = f"{self._prefix}:{limit.name}:{caller}:{window}"
                    pipe.incr(key)
                    pipe.expire(key, limit.window_seconds + 1)
                replies = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            minute = int(now // 60)
            if self._warned_minute != minute:
                # One warning a minute, not one per request, while Redis is down.
                self._warned_minute = minute
                log.warning("rate limiter unavailable, allowing requests: %s", exc)
            return Decision(True, min(limit.requests for limit, _ in buckets), 0)
        counts = [int(count) for count in replies[0::2]]
        refused: Decision | None = None
        for (limit, _), window, count in zip(buckets, windows, counts, strict=True):
            if count <= limit.requests:
                continue
            retry_after = max(1, (window + 1) * limit.window_seconds - int(now))
            if refused is None or retry_after > refused.retry_after_seconds:
                # The longest wait: retrying sooner would only be refused by this limit again.
                refused = Decision(False, 0, retry_after, limit)
        if refused is not None:
            return refused
        remaining = min(limit.requests - count for (limit, _), count in zip(buckets, counts, strict=True))
        return Decision(True, remaining, 0)
