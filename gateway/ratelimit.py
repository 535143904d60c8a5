"""Fixed-window rate limits in Redis: one request counts in several buckets at once, in one round trip.

Why Redis: the gateway runs as several stateless replicas, so the count has to be shared (a limit kept
in each replica's memory would be multiplied by however many replicas a load balancer spreads a client
over). Why fail open: the limits protect the backends from one noisy caller; refusing every checkout
because Redis blinked would turn a cache outage into a full outage.

A request counts in every bucket it belongs to (its client IP's, its subject's, …) and is refused when
any of them is over; the refusal names that limit. Each bucket is ``INCR`` + ``EXPIRE`` of one key per
window, all in one Lua script (``EVALSHA``): atomic as a MULTI/EXEC of the same commands was, and one command
for the client to send and one reply to read instead of ``2 + 2 x buckets`` (redis-py's per-command work was
most of the gateway's CPU for the limit: bench.gateway).
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

# KEYS: the buckets' keys; ARGV: each key's TTL in seconds. Answers each key's count after this request.
_HIT_SCRIPT = """
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('INCR', key)
  redis.call('EXPIRE', key, ARGV[i])
end
return counts
"""


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
        # EVALSHA, loading the script first where Redis does not have it (a restarted Redis, say).
        self._hit_script = redis.register_script(_HIT_SCRIPT)
        self._prefix = prefix
        self._clock = clock
        self._warned_minute = -1

    async def hit(self, *buckets: tuple[Limit, str]) -> Decision:
        """Count one request in each ``(limit, caller)`` bucket; allowed when Redis can't be reached."""
        if not buckets:
            return Decision(True, 0, 0)
        now = self._clock()
        windows = [int(now // limit.window_seconds) for limit, _ in buckets]
        keys = [
            f"{self._prefix}:{limit.name}:{caller}:{window}"
            for (limit, caller), window in zip(buckets, windows, strict=True)
        ]
        try:
            replies = await self._hit_script(keys=keys, args=[limit.window_seconds + 1 for limit, _ in buckets])
        except (RedisError, OSError, TimeoutError) as exc:
            minute = int(now // 60)
            if self._warned_minute != minute:
                # One warning a minute, not one per request, while Redis is down.
                self._warned_minute = minute
                log.warning("rate limiter unavailable, allowing requests: %s", exc)
            return Decision(True, min(limit.requests for limit, _ in buckets), 0)
        counts = [int(count) for count in replies]
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
