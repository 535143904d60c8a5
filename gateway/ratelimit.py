"""Fixed-window rate limits in Redis, spent from token leases: most requests make no Redis call at all.

Why Redis: the gateway runs as several stateless replicas, so the count has to be shared (a limit kept
in each replica's memory would be multiplied by however many replicas a load balancer spreads a client
over). Why fail open: the limits protect the backends from one noisy caller; refusing every checkout
because Redis blinked would turn a cache outage into a full outage.

A request counts in every bucket it belongs to (its client IP's, its subject's, …: one ``(limit, caller)``
key per window) and is refused when any of them is over; the refusal names that limit.

**Leases.** A replica takes tokens from a bucket's Redis count several at a time (``INCRBY n``) and spends
them locally, one per request, until the window ends. Every bucket of a request that has no token left here
takes its lease in one Lua script (``EVALSHA``: one command to send, one reply to read, whatever the number
of buckets). The rules, each pinned by tests/gateway/integration/test_ratelimit.py:

- *Never more than the limit, across any number of replicas.* A token is spent only after Redis counted it.
  When ``INCRBY n`` takes the count from ``c - n`` to ``c``, the replica is granted the part of
  ``[c - n, c)`` under the limit, ``max(0, min(n, limit - (c - n)))``: the grants of all replicas are disjoint
  slices of ``[0, limit)``. A bucket granted nothing refuses the request, with the Retry-After of today (unless a
  concurrent request's lease brought tokens here meanwhile: one of those is spent instead).
- *Waste is conservative and bounded.* Tokens a replica leased and did not spend expire with the window:
  a client spread over replicas may be refused a little before the limit, never after it.
- *Lease sizes: 1, 2, 4, 8, … per bucket and window, capped at* ``lease_cap(limit) = max(1, limit // 32)``.
  Doubling from 1: the first request of a bucket in a window costs the one token it costs today, and only a
  lease Redis answered doubles the next (one that failed or was cut off does not), so until the cap a replica
  holds unspent about what it has already spent there: a quiet caller wastes almost nothing.
  One checkout's 8 calls by one subject take 4 round trips instead of 8 (leases of 1, 2, 4 and 8: 15
  tokens, 7 left to expire), a busy bucket ``~log2(cap)`` and then one per ``cap`` requests. The cap bounds what a
  replica holds: a client spread over ``R`` replicas is admitted about ``limit - (R - 1) * limit / 32`` requests
  a window or more (97 % of it with 2 replicas, 91 % with 4; a little less while its own requests' leases are in
  flight at the window's end, or when its entry was evicted). Limits under 64 (the 60 guest tokens per IP
  an hour) have a cap of 1: every request is one ``INCRBY 1``, exactly the count of today. Concurrent
  requests' leases in flight count against the cap too (``pending``), so a burst at a fresh bucket does not
  take ``1 + 2 + 4 + …`` tokens at once.
- *A request in several buckets* is admitted only when every bucket grants it a token. The tokens it took
  from the other buckets are spent all the same, as today's ``INCR`` of every bucket counted a refused
  request in each. A round trip taken anyway also tops up the request's other buckets whose cap is above 1
  (within the cap), so buckets that a client always hits together (IP and subject) lease together.
- *The lease table is bounded* (``max_leases``, least recently used evicted, taking its unspent tokens with
  it: conservative), and entries of past windows are dropped as they reach its old end, or replaced when
  their bucket is hit in a new window. An attacker who makes ``max_leases`` new buckets between two of a
  victim's requests (fresh IPv6 addresses, say) evicts the victim's entry each time and so wastes its held
  tokens; since a new entry leases from 1 again, that costs the victim at most about half its limit, and never
  admits anyone more.
- *Redis unreachable:* the request is allowed (one warning a minute), as before leases.

What a ``Decision`` reports as ``remaining`` is this replica's view: the tokens it holds plus what Redis had
under the limit at its last lease of that bucket (other replicas may have taken some since, as they could
right after the reply of today's ``INCR``). The gateway does not send it to clients; a refusal's body and
Retry-After are unchanged.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

__all__ = ["DEFAULT_MAX_LEASES", "REDIS_CONNECTIONS", "Decision", "Limit", "RateLimiter", "lease_cap", "limits_redis"]

log = logging.getLogger("kassa.gateway.ratelimit")

# Buckets (one per limit and caller) whose leases one replica keeps: ~300 bytes each with its key, 3 MB in all.
DEFAULT_MAX_LEASES = 10_000

# Connections one gateway replica opens to Redis for the limits; a request finding them all busy waits for one.
REDIS_CONNECTIONS = 64


def limits_redis(url: str, *, timeout: float = 0.5, connections: int = REDIS_CONNECTIONS) -> Redis:
    """The client for the limits: at most ``connections`` to Redis, and a request that finds them all in use waits
    up to ``timeout`` for one. redis-py's default pool instead refuses the 101st concurrent command ("Too many
    connections"), which the limiter, failing open, would have answered by admitting the request uncounted: a flood
    of concurrent requests must not switch the limits off. Past ``timeout`` (Redis too slow to answer) it does fail
    open, as for a Redis that can't be reached."""
    pool = BlockingConnectionPool.from_url(
        url, max_connections=connections, timeout=timeout, socket_timeout=timeout, socket_connect_timeout=timeout
    )
    return Redis.from_pool(pool)


# KEYS: the buckets' keys; ARGV: each key's lease (tokens), then each key's TTL in seconds. Answers each key's
# count after this call. The TTL is renewed by every lease, in the same atomic script (no round trip more): a key
# lives its window and a second past its last lease, so a replica whose clock runs ahead of another's, and created
# the key early, cannot make it expire while the other still counts in that window.
_LEASE_SCRIPT = """
local n = #KEYS
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('INCRBY', key, tonumber(ARGV[i]))
  redis.call('EXPIRE', key, ARGV[n + i])
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


def lease_cap(limit: Limit) -> int:
    """The most tokens a replica holds for one bucket of ``limit`` (module docstring: why 1/32, and 1 under 64)."""
    return max(1, limit.requests // 32)


@dataclass(eq=False, slots=True)
class _Lease:
    """One bucket's tokens on this replica, for one window."""

    window: int
    ends_at: int  # the window's end (s since the epoch): the entry is worthless from then on
    cap: int
    tokens: int = 0  # counted in Redis, not yet spent
    pending: int = 0  # asked for by leases still in flight
    next_size: int = 1
    left: int = 0  # what Redis had under the limit after this replica's last lease of the bucket

    def take(self, *, needed: bool) -> int:
        """The size of the next lease (0: none), counted as pending: at least 1 when a request ``needed`` it."""
        size = min(self.next_size, self.cap - self.tokens - self.pending)
        if needed:
            size = max(1, size)
        if size <= 0:
            return 0
        self.pending += size
        return size

    def answered(self, size: int) -> None:
        """A lease of ``size`` got Redis's answer: no longer pending, and the next one may be twice as big (a lease
        that failed, or was cut off, does not grow the next)."""
        self.pending -= size
        self.next_size = min(2 * self.next_size, self.cap)


class RateLimiter:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "kassa:gateway:rl",
        clock: Callable[[], float] = time.time,
        max_leases: int = DEFAULT_MAX_LEASES,
    ) -> None:
        if max_leases < 1:
            raise ValueError("max_leases must be at least 1")
        self._redis = redis
        # EVALSHA, loading the script first where Redis does not have it (a restarted Redis, say).
        self._lease_script = redis.register_script(_LEASE_SCRIPT)
        self._prefix = prefix
        self._clock = clock
        self._warned_minute = -1
        self._max_leases = max_leases
        # (limit name, caller) -> its lease, least recently hit first.
        self._leases: OrderedDict[tuple[str, str], _Lease] = OrderedDict()

    @property
    def leases_held(self) -> int:
        """Buckets with an entry in the lease table (bounded by ``max_leases``)."""
        return len(self._leases)

    async def hit(self, *buckets: tuple[Limit, str]) -> Decision:
        """Spend one token in each ``(limit, caller)`` bucket, leasing from Redis those that have none here;
        allowed when Redis can't be reached."""
        if not buckets:
            return Decision(True, 0, 0)
        now = self._clock()
        windows = [int(now // limit.window_seconds) for limit, _ in buckets]
        leases = [
            self._lease(limit, caller, window, now) for (limit, caller), window in zip(buckets, windows, strict=True)
        ]
        # A token held here is spent at once (no await before it: no other request can spend it too).
        needed: list[int] = []
        for i, lease in enumerate(leases):
            if lease.tokens > 0:
                lease.tokens -= 1
            else:
                needed.append(i)
        if not needed:
            return Decision(True, self._remaining(leases), 0)
        # One round trip: the buckets that need a token, and the others' top-ups that fit under their caps.
        sizes = [0] * len(buckets)
        for i, lease in enumerate(leases):
            if i in needed or lease.cap > 1:
                sizes[i] = lease.take(needed=i in needed)
        asked = [i for i, size in enumerate(sizes) if size > 0]
        keys = [self._key(buckets[i][0], buckets[i][1], windows[i]) for i in asked]
        ttls = [buckets[i][0].window_seconds + 1 for i in asked]
        try:
            replies = await self._lease_script(keys=keys, args=[*(sizes[i] for i in asked), *ttls])
        except BaseException as exc:
            # Whatever ended the call (Redis down, the request cancelled), its leases are no longer in flight.
            for i in asked:
                leases[i].pending -= sizes[i]
            if not isinstance(exc, (RedisError, OSError, TimeoutError)):
                raise
            minute = int(now // 60)
            if self._warned_minute != minute:
                # One warning a minute, not one per request, while Redis is down.
                self._warned_minute = minute
                log.warning("rate limiter unavailable, allowing requests: %s", exc)
            return Decision(True, min(limit.requests for limit, _ in buckets), 0)
        refused: Decision | None = None
        for i, count in zip(asked, (int(reply) for reply in replies), strict=True):
            (limit, caller), lease, size = buckets[i], leases[i], sizes[i]
            lease.answered(size)
            granted = max(0, min(size, limit.requests - (count - size)))
            lease.left = max(0, limit.requests - count)
            if i in needed:
                if granted == 0 and lease.tokens > 0:
                    # Redis is full, but a concurrent request's lease brought tokens here meanwhile: spend one.
                    lease.tokens -= 1
                    continue
                if granted == 0:
                    retry_after = max(1, (windows[i] + 1) * limit.window_seconds - int(now))
                    if refused is None or retry_after > refused.retry_after_seconds:
                        # The longest wait: retrying sooner would only be refused by this limit again.
                        refused = Decision(False, 0, retry_after, limit)
                    continue
                granted -= 1  # this request's token
            if self._leases.get((limit.name, caller)) is lease:
                lease.tokens += granted
            # else evicted or replaced while the lease was in flight: its tokens are lost (never admitted).
        if refused is not None:
            # The tokens this request took from its other buckets stay spent, as today's INCR of every bucket.
            return refused
        return Decision(True, self._remaining(leases), 0)

    def _key(self, limit: Limit, caller: str, window: int) -> str:
        return f"{self._prefix}:{limit.name}:{caller}:{window}"

    def _lease(self, limit: Limit, caller: str, window: int, now: float) -> _Lease:
        """The bucket's entry for ``window``: a new one (nothing held) when it has none or one of a past window."""
        key = (limit.name, caller)
        lease = self._leases.get(key)
        if lease is not None and lease.window == window:
            self._leases.move_to_end(key)
            return lease
        if lease is None:
            # Past windows' entries at the old end first, then the least recently hit: its tokens are lost.
            while self._leases:
                oldest = next(iter(self._leases.values()))
                if oldest.ends_at > now and len(self._leases) < self._max_leases:
                    break
                self._leases.popitem(last=False)
        else:
            self._leases.move_to_end(key)
        lease = _Lease(window=window, ends_at=(window + 1) * limit.window_seconds, cap=lease_cap(limit))
        self._leases[key] = lease
        return lease

    @staticmethod
    def _remaining(leases: list[_Lease]) -> int:
        return min(lease.left + lease.tokens for lease in leases)
