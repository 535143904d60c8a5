"""Redis side of idempotency: a short-lived lock and a cache of finished results.

The lock (``SET key token NX PX ttl``) keeps a double click from running the
same request twice at once; its TTL is at least the longest checkout. Because a
Redis lock can expire (or Redis can lose it), callers also keep a durable guard
in Postgres — this is the fast path, not the only one.
"""

from __future__ import annotations

import secrets

from redis.asyncio import Redis

__all__ = ["IdempotencyStore"]

# Delete the lock only if we still own it.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class IdempotencyStore:
    def __init__(self, redis: Redis, *, prefix: str, lock_ttl_ms: int, result_ttl_seconds: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self._lock_ttl_ms = lock_ttl_ms
        self._result_ttl = result_ttl_seconds
        self._release = redis.register_script(_RELEASE)

    async def acquire(self, key: str) -> str | None:
        """A token if we took the lock, None if someone else holds it."""
        token = secrets.token_hex(16)
        ok = await self._redis.set(f"{self._prefix}:lock:{key}", token, nx=True, px=self._lock_ttl_ms)
        return token if ok else None

    async def release(self, key: str, token: str) -> None:
        await self._release(keys=[f"{self._prefix}:lock:{key}"], args=[token])

    async def get_result(self, key: str) -> bytes | None:
        value = await self._redis.get(f"{self._prefix}:result:{key}")
        return value if isinstance(value, bytes | None) else str(value).encode()

    async def put_result(self, key: str, value: bytes) -> None:
        await self._redis.set(f"{self._prefix}:result:{key}", value, ex=self._result_ttl)
