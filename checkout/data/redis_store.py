"""ConfirmCheckout's Redis — the lock on a request's key and the cache of its answer — as a filter.

Redis answers fast; Postgres decides (the session's status under the durable guard, the answers in
``confirm_requests``). So no call here raises or waits long: each is bounded (the client's socket
timeouts, and an overall timeout here), and a Redis that is down, paused or wiped answers "no lock
taken" / "nothing cached", upon which ConfirmCheckout goes to the durable guard. After a failure
Redis is left alone for a short cool-off, so a paused server costs a request one timeout, not one per
call. Every call that could not use Redis is counted in :data:`DEGRADED` (by operation), and the
first of each spell is logged.

The lock is taken for a short lease and renewed while its holder lives (up to ``lock_max_ms``, the
longest checkout): a process that dies leaves a lock that lapses within one lease, not one that
blocks the key for the longest checkout.

A request's two keys, ``<prefix>:{<key>}:result`` and ``<prefix>:{<key>}:lock``, share the hash tag
``{<key>}``, so on Redis Cluster they live in one hash slot and each script may touch both (keys in
different slots would fail every call with CROSSSLOT, the filter off for good). Keys of the earlier
form (``<prefix>:lock:<key>``, ``<prefix>:result:<key>``) left in Redis are simply never read again:
a lock lapses, an answer expires, and meanwhile the durable guard in Postgres decides, as it does
whenever Redis has nothing.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

__all__ = ["DEGRADED", "RedisIdempotencyStore"]

log = logging.getLogger("kassa.checkout.redis")

T = TypeVar("T")

# Calls that went without Redis, by operation (begin, end, renew), since start.
DEGRADED: Counter[str] = Counter()

# ConfirmCheckout's first call: the answer cached for the key, if any (then no lock is taken: {0, answer});
# else the lock, if free ({1}), or not ({2}). ARGV: the token, the lease in ms.
_BEGIN = """
local answer = redis.call('get', KEYS[1])
if answer then
  return {0, answer}
end
if redis.call('set', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1}
end
return {2}
"""

# ConfirmCheckout's last call: cache the answer (ARGV[2], unless empty, for ARGV[3] seconds), then release the
# lock if we still own it (ARGV[1], unless empty).
_END = """
if ARGV[2] ~= '' then
  redis.call('set', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
if ARGV[1] ~= '' and redis.call('get', KEYS[2]) == ARGV[1] then
  return redis.call('del', KEYS[2])
end
return 0
"""

# Extend the lock only if we still own it.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


class RedisIdempotencyStore:
    """The IdempotencyStore port on Redis: bounded, never raising, with a lock that lives as long as its holder."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        lock_lease_ms: int,
        lock_max_ms: int,
        result_ttl_seconds: int,
        timeout_seconds: float,
        cool_off_seconds: float = 2.0,
    ) -> None:
        self._renew = redis.register_script(_RENEW)
        self._begin = redis.register_script(_BEGIN)
        self._end = redis.register_script(_END)
        self._prefix = prefix
        self._result_ttl = result_ttl_seconds
        self._lease_ms = lock_lease_ms
        self._max_seconds = max(lock_max_ms, lock_lease_ms) / 1000
        # The client's socket timeouts bound connect and each read; this bounds a call as a whole.
        self._timeout = 3 * timeout_seconds
        self._cool_off = cool_off_seconds
        self._down_until = 0.0
        self._held: dict[str, asyncio.TimerHandle] = {}
        self._renewing: set[asyncio.Task[None]] = set()

    async def begin(self, key: str) -> tuple[str | None, bytes | None]:
        """In one round trip: (None, the answer) when one is cached for ``key`` (no lock is taken); else (a token,
        None) when this caller took the lock, (None, None) when another holds it — or Redis can't say."""
        token = secrets.token_hex(16)
        keys = self._keys(key)
        reply = await self._call("begin", lambda: self._begin(keys=keys, args=[token, self._lease_ms]), None)
        if not reply:
            return None, None
        if int(reply[0]) == 0:
            answer = reply[1]
            return None, answer if isinstance(answer, bytes) else str(answer).encode()
        if int(reply[0]) == 1:
            self._keep(key, token, time.monotonic() + self._max_seconds)
            return token, None
        return None, None

    async def end(self, key: str, token: str | None, answer: bytes | None) -> None:
        """In one round trip: cache ``answer`` (if any) and release the lock (if ``token``, and still ours)."""
        if token is not None and (handle := self._held.pop(token, None)) is not None:
            handle.cancel()
        if token is None and answer is None:
            return
        keys = self._keys(key)
        args: list[str | bytes | int] = [token or "", answer or b"", self._result_ttl]
        await self._call("end", lambda: self._end(keys=keys, args=args), None)

    def _keys(self, key: str) -> list[str]:
        """The Redis keys of ``key``'s cached answer and lock, in the order the scripts take them: one hash tag,
        so one cluster slot."""
        return [f"{self._prefix}:{{{key}}}:result", f"{self._prefix}:{{{key}}}:lock"]

    # --- the lock's lease -------------------------------------------------------------------

    def _keep(self, key: str, token: str, until: float) -> None:
        loop = asyncio.get_running_loop()
        self._held[token] = loop.call_later(self._lease_ms / 3000, self._renew_soon, key, token, until)

    def _renew_soon(self, key: str, token: str, until: float) -> None:
        if token not in self._held:
            return
        if time.monotonic() >= until:
            del self._held[token]  # held for the longest checkout: let it lapse
            return
        task = asyncio.ensure_future(self._renew_once(key, token))
        self._renewing.add(task)
        task.add_done_callback(self._renewing.discard)
        self._keep(key, token, until)

    async def _renew_once(self, key: str, token: str) -> None:
        await self._call("renew", lambda: self._renew(keys=self._keys(key)[1:], args=[token, self._lease_ms]), None)

    # --- degradation ------------------------------------------------------------------------

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]], fallback: T) -> T:
        if time.monotonic() < self._down_until:
            DEGRADED[operation] += 1
            return fallback
        try:
            async with asyncio.timeout(self._timeout):
                answer = await call()
        except (RedisError, OSError, TimeoutError) as exc:
            DEGRADED[operation] += 1
            if not self._down_until:
                log.warning(
                    "Redis failed (%s: %s); ConfirmCheckout goes on without it, on the durable guard in Postgres",
                    type(exc).__name__, exc,
                )  # fmt: skip
            self._down_until = time.monotonic() + self._cool_off
            return fallback
        if self._down_until:
            log.warning("Redis answers again; ConfirmCheckout uses it again")
            self._down_until = 0.0
        return answer
