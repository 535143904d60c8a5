"""Per-caller fixed-window rate limit in Redis.

Why Redis: the gateway runs as several stateless replicas, so the count has to be shared. Why fail
open: the limit protects the backends from one noisy caller; refusing every checkout because Redis
blinked would turn a cache outage into a full outage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

__all__ = ["Decision", "RateLimiter"]

log = logging.getLogger("kassa.gateway.ratelimit")

WINDOW_SECONDS = 60


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    retry_after_seconds: int


class RateLimiter:
    """``limit`` requests per caller per minute window (INCR + EXPIRE in one round trip)."""

    def __init__(
        self,
        redis: Redis,
        limit: int,
        *,
        prefix: str = "kassa:gateway:rl",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive; leave the limiter out to disable it")
        self._redis = redis
        self._limit = limit
        self._prefix = prefix
        self._clock = clock
        self._warned_window = -1

    async def hit(self, caller: str) -> Decision:
        """Count one request of ``caller``; allowed when Redis can't be reached."""
        now = self._clock()
        window = int(now // WINDOW_SECONDS)
        retry_after = max(1, (window + 1) * WINDOW_SECONDS - int(now))
        key = f"{self._prefix}:{caller}:{window}"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, WINDOW_SECONDS + 1)
                count, _ = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            if self._warned_window != window:
                # One warning per window, not one per request, while Redis is down.
                self._warned_window = window
                log.warning("rate limiter unavailable, allowing requests: %s", exc)
            return Decision(True, self._limit, self._limit, 0)
        count = int(count)
        return Decision(
            allowed=count <= self._limit,
            limit=self._limit,
            remaining=max(0, self._limit - count),
            retry_after_seconds=retry_after,
        )
