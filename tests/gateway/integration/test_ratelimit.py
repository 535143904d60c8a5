"""The fixed-window limiter against the stack's real Redis: per bucket, per window, several at once, fail-open,
and its token leases (never more than the limit across replicas, small limits counted as before, bounded table)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from helpers import unique
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from devstack.localstack import StackEndpoints, free_ports
from gateway.ratelimit import Decision, Limit, RateLimiter, lease_cap, limits_redis

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


async def test_every_lease_renews_its_keys_ttl(redis: Redis) -> None:
    """A key lives a second past its window from its last lease, not from its first: a replica whose clock runs ahead
    and created it early cannot make it expire while another still counts in that window."""
    prefix = unique("rl")
    limiter = RateLimiter(redis, prefix=prefix, clock=Clock(T0))
    assert (await limiter.hit((PER_MINUTE, "a"))).allowed
    key = f"{prefix}:{PER_MINUTE.name}:a:{int(T0 // 60)}"
    await redis.expire(key, 5)  # as if it had been created 56 s ago
    assert (await limiter.hit((PER_MINUTE, "a"))).allowed  # cap 1: a lease of its own
    assert 5 < await redis.ttl(key) <= 61


async def test_a_hit_is_one_command_however_many_buckets(redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """One EVALSHA (INCR + EXPIRE of every bucket inside it), not MULTI, 2 commands per bucket and EXEC."""
    limiter = RateLimiter(redis, prefix=unique("rl"), clock=Clock(T0))
    await limiter.hit((PER_MINUTE, "warm"))  # the script is loaded on first use
    sent = count_commands(redis, monkeypatch)
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


async def test_more_concurrent_requests_than_redis_connections_are_all_counted(stack: StackEndpoints) -> None:
    """150 requests at once at a fresh bucket each need a lease: the gateway's client (limits_redis) makes the ones
    past its connections wait for one instead of failing open, so exactly the limit is admitted (redis-py's default
    pool refused the 101st concurrent command, and the limiter admitted those requests uncounted)."""
    client = limits_redis(stack.redis_url, timeout=5.0, connections=8)
    try:
        prefix = unique("rl")
        limit = Limit("subject", 100, 60)
        limiter = RateLimiter(client, prefix=prefix, clock=Clock(T0))
        decisions = await asyncio.gather(*(limiter.hit((limit, "a")) for _ in range(150)))
        assert sum(d.allowed for d in decisions) == 100
        assert await count_of(client, prefix, limit, "a") == 150
    finally:
        await client.aclose()


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


# -- token leases ------------------------------------------------------------------------------------------------

# The gateway's limits (gateway.config): per subject 600 a minute (the only one in development: the bench), and in
# production also per client IP 1200 a minute and 60 guest tokens per IP an hour.
SUBJECT = Limit("subject", 600, 60)
IP = Limit("ip", 1200, 60)
GUEST = Limit("guest_tokens", 60, 3600)


def count_commands(redis: Redis, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The commands ``redis`` sends from now on (an EVALSHA is one script call)."""
    sent: list[str] = []
    execute = redis.execute_command

    async def counting(*args: object, **options: object) -> object:
        sent.append(str(args[0]))
        return await execute(*args, **options)

    monkeypatch.setattr(redis, "execute_command", counting)
    return sent


async def count_of(redis: Redis, prefix: str, limit: Limit, caller: str, now: float = T0) -> int:
    raw = await redis.get(f"{prefix}:{limit.name}:{caller}:{int(now // limit.window_seconds)}")
    return 0 if raw is None else int(raw)


async def warm(limiter: RateLimiter) -> None:
    await limiter.hit((Limit("warm", 1), "warm"))  # the script is loaded on first use


async def test_one_checkout_takes_four_script_calls_instead_of_eight(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bench's flow, as gateway.app's _rate_limit counts it in development: a guest token (no limit there) and
    8 calls by its subject. Before leases: one EVALSHA per limited request, 8. Now leases of 1, 2, 4 and 8."""
    prefix = unique("rl")
    limiter = RateLimiter(redis, prefix=prefix, clock=Clock(T0))
    await warm(limiter)
    sent = count_commands(redis, monkeypatch)
    decisions = [await limiter.hit()]  # POST /v1/auth/guest
    decisions += [await limiter.hit((SUBJECT, "sub:guest-1")) for _ in range(8)]
    assert all(d.allowed for d in decisions)
    assert sent == ["EVALSHA"] * 4
    # 15 tokens counted in Redis, 8 spent, 7 held here: under the cap of 600 // 32 = 18.
    assert await count_of(redis, prefix, SUBJECT, "sub:guest-1") == 1 + 2 + 4 + 8
    assert decisions[-1].remaining == 600 - 15 + 7


async def test_one_checkout_with_the_production_limits_takes_five_script_calls_instead_of_nine(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the per-IP limits on: the guest token counts per IP twice, the 8 calls per IP and per subject. The IP's
    and the subject's leases are taken together (a round trip tops up the request's other buckets)."""
    prefix = unique("rl")
    limiter = RateLimiter(redis, prefix=prefix, clock=Clock(T0))
    await warm(limiter)
    sent = count_commands(redis, monkeypatch)
    decisions = [await limiter.hit((IP, "192.0.2.7"), (GUEST, "192.0.2.7"))]
    decisions += [await limiter.hit((IP, "192.0.2.7"), (SUBJECT, "sub:guest-2")) for _ in range(8)]
    assert all(d.allowed for d in decisions)
    assert sent == ["EVALSHA"] * 5
    assert await count_of(redis, prefix, GUEST, "192.0.2.7") == 1  # a limit under 64: one token, as before


async def test_a_small_limit_is_counted_exactly_as_before(redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under 64 a lease is one token: every request is one script call and one count in Redis, admitted or not, also
    beside a big limit's bucket that leases ahead."""
    assert lease_cap(Limit("x", 63)) == 1 and lease_cap(GUEST) == 1 and lease_cap(Limit("x", 64)) == 2
    prefix = unique("rl")
    clock = Clock(T0)
    limiter = RateLimiter(redis, prefix=prefix, clock=clock)
    await warm(limiter)
    sent = count_commands(redis, monkeypatch)
    decisions: list[Decision] = []
    for n in range(1, 64):
        decisions.append(await limiter.hit((IP, "192.0.2.8"), (GUEST, "192.0.2.8")))
        assert await count_of(redis, prefix, GUEST, "192.0.2.8") == n
    assert len([c for c in sent if c == "EVALSHA"]) == 63
    assert [d.allowed for d in decisions] == [True] * 60 + [False] * 3
    assert [d.remaining for d in decisions[:60]] == list(range(59, -1, -1))
    assert {(d.limit, d.retry_after_seconds) for d in decisions[60:]} == {(GUEST, 3600 - 790)}


async def test_the_request_that_crosses_the_limit_is_refused_with_the_wait_to_the_next_window(redis: Redis) -> None:
    """Limit 100, cap 3: leases of 1, 2, 3, 3, …; the 34th lease of 3 is granted only its 1 token under the limit.
    Exactly 100 admitted, the 101st refused with Retry-After to the window's end, and so is every one after it."""
    prefix = unique("rl")
    clock = Clock(T0)
    limit = Limit("subject", 100, 60)
    limiter = RateLimiter(redis, prefix=prefix, clock=clock)
    decisions = [await limiter.hit((limit, "a")) for _ in range(100)]
    assert all(d.allowed for d in decisions)
    assert decisions[-1].remaining == 0
    assert await count_of(redis, prefix, limit, "a") == 1 + 2 + 3 * 33  # the last lease asked 3, was granted 1
    clock.now = T0 + 7.5
    refused = await limiter.hit((limit, "a"))
    # To the window's end from the whole second, as before: 60 - 17.
    assert (refused.allowed, refused.limit, refused.retry_after_seconds) == (False, limit, 43)
    assert not (await limiter.hit((limit, "a"))).allowed


async def test_a_new_window_starts_a_new_lease_and_held_tokens_are_not_carried_over(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = unique("rl")
    clock = Clock(T0)
    limiter = RateLimiter(redis, prefix=prefix, clock=clock)
    await warm(limiter)
    for _ in range(2):
        assert (await limiter.hit((SUBJECT, "a"))).allowed
    assert await count_of(redis, prefix, SUBJECT, "a") == 3  # leases of 1 and 2: one token held
    clock.now = T0 + 50  # the next window
    sent = count_commands(redis, monkeypatch)
    assert (await limiter.hit((SUBJECT, "a"))).allowed
    assert sent == ["EVALSHA"]  # the token held for the last window is not spent in this one
    assert await count_of(redis, prefix, SUBJECT, "a", clock.now) == 1  # and the lease starts at 1 again
    assert limiter.leases_held == 2  # the warm-up's bucket and this one: an entry per bucket, not per window


async def test_a_bucket_full_in_one_window_admits_again_in_the_next(redis: Redis) -> None:
    clock = Clock(T0)
    limit = Limit("subject", 64, 60)
    limiter = RateLimiter(redis, prefix=unique("rl"), clock=clock)
    assert [(await limiter.hit((limit, "a"))).allowed for _ in range(65)] == [True] * 64 + [False]
    clock.now = T0 + 50
    assert [(await limiter.hit((limit, "a"))).allowed for _ in range(65)] == [True] * 64 + [False]


async def test_a_refused_request_spends_its_token_in_every_other_bucket_as_before(redis: Redis) -> None:
    """Today every bucket counted a refused request too: the tokens it took from the IP's bucket stay spent, so the
    IP is left with exactly what the old INCRs left it, never more."""
    limiter = RateLimiter(redis, prefix=unique("rl"), clock=Clock(T0))
    ip, subject = Limit("ip", 640, 60), Limit("subject", 2, 60)
    assert [(await limiter.hit((ip, "192.0.2.1"), (subject, "s"))).allowed for _ in range(5)] == [True] * 2 + [
        False
    ] * 3
    admitted = 0
    while (await limiter.hit((ip, "192.0.2.1"))).allowed:
        admitted += 1
    assert admitted == 640 - 5


async def test_a_burst_leases_at_most_the_cap_beyond_its_own_tokens(redis: Redis) -> None:
    """Leases in flight count against the cap. 15 requests one after another lease 1, 2, 4 and 8 and spend them all;
    then 8 at once: the first leases 16, the second the 4 left under the cap of 20, the other 6 one each (a request
    needs a token). Without the in-flight count each of the 8 would lease 16."""
    prefix = unique("rl")
    limit = Limit("subject", 640, 60)  # cap 20
    limiter = RateLimiter(redis, prefix=prefix, clock=Clock(T0))
    assert all([(await limiter.hit((limit, "a"))).allowed for _ in range(15)])
    assert await count_of(redis, prefix, limit, "a") == 1 + 2 + 4 + 8
    decisions = await asyncio.gather(*(limiter.hit((limit, "a")) for _ in range(8)))
    assert all(d.allowed for d in decisions)
    assert await count_of(redis, prefix, limit, "a") == 15 + 16 + 4 + 6


async def test_a_request_whose_lease_finds_redis_full_spends_a_token_a_concurrent_lease_brought(redis: Redis) -> None:
    """Two requests at once, two tokens left under the limit in Redis: the first leases both, the second's lease
    finds the bucket full, and spends the token the first one brought here instead of being refused."""
    prefix = unique("rl")
    limit = Limit("subject", 64, 60)  # cap 2
    limiter = RateLimiter(redis, prefix=prefix, clock=Clock(T0))
    assert (await limiter.hit((limit, "a"))).allowed  # a lease of 1 answered: the next is 2
    await redis.set(f"{prefix}:{limit.name}:a:{int(T0 // 60)}", 62, keepttl=True)  # other replicas took 61 more
    first, second = await asyncio.gather(limiter.hit((limit, "a")), limiter.hit((limit, "a")))
    assert first.allowed and second.allowed
    assert await count_of(redis, prefix, limit, "a") == 62 + 2 + 1
    assert not (await limiter.hit((limit, "a"))).allowed


async def test_leases_in_flight_together_do_not_grow_the_next(redis: Redis) -> None:
    """Only a lease Redis answered doubles the next: 16 requests at once at a fresh bucket take a token each."""
    prefix = unique("rl")
    limit = Limit("subject", 640, 60)
    limiter = RateLimiter(redis, prefix=prefix, clock=Clock(T0))
    decisions = await asyncio.gather(*(limiter.hit((limit, "a")) for _ in range(16)))
    assert all(d.allowed for d in decisions)
    assert await count_of(redis, prefix, limit, "a") == 16


async def test_a_failed_lease_does_not_grow_the_next(redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """Five requests while Redis fails (allowed, fail-open), then three: leases of 1 and 2 as for a fresh bucket,
    not one of the whole cap (20) as five doublings would have made it."""
    prefix = unique("rl")
    limit = Limit("subject", 640, 60)
    limiter = RateLimiter(redis, prefix=prefix, clock=Clock(T0))
    script = limiter._lease_script
    failures = 5

    async def failing(**kwargs: object) -> object:
        nonlocal failures
        if failures:
            failures -= 1
            raise ConnectionError("Redis went away")
        return await script(**kwargs)

    monkeypatch.setattr(limiter, "_lease_script", failing)
    assert all([(await limiter.hit((limit, "a"))).allowed for _ in range(5 + 3)])
    assert await count_of(redis, prefix, limit, "a") == 1 + 2


async def test_a_request_cancelled_while_leasing_leaves_no_lease_in_flight(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two requests cancelled while their leases wait for Redis: the two tokens they asked for are no longer counted
    as in flight, so the bucket (cap 2) leases 1, then 2 again: 4 requests take 3 round trips (with the two counted
    for ever, each request would lease one token: 4)."""
    prefix = unique("rl")
    limit = Limit("subject", 64, 60)  # cap 2
    limiter = RateLimiter(redis, prefix=prefix, clock=Clock(T0))
    await warm(limiter)
    script = limiter._lease_script
    stuck, both_waiting = asyncio.Event(), asyncio.Event()
    calls = 0

    async def hanging(**kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 2:
            both_waiting.set()
        if not stuck.is_set():
            await asyncio.Event().wait()  # never answers: the request is cancelled here
        return await script(**kwargs)

    monkeypatch.setattr(limiter, "_lease_script", hanging)
    waiting = [asyncio.ensure_future(limiter.hit((limit, "a"))) for _ in range(2)]
    await both_waiting.wait()
    for task in waiting:
        task.cancel()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    stuck.set()
    calls = 0
    assert all([(await limiter.hit((limit, "a"))).allowed for _ in range(4)])
    assert calls == 3


async def test_two_replicas_never_admit_more_than_the_limit_and_waste_at_most_a_cap(redis: Redis) -> None:
    """Alternating requests over two gateways on one Redis: 640 admitted at most; the first refusal comes no earlier
    than the other replica's held tokens (at most the cap) allow."""
    prefix = unique("rl")
    limit = Limit("subject", 640, 60)
    replicas = [RateLimiter(redis, prefix=prefix, clock=Clock(T0)) for _ in range(2)]
    admitted, turn = 0, 0
    while (await replicas[turn % 2].hit((limit, "a"))).allowed:
        admitted, turn = admitted + 1, turn + 1
    assert 640 - lease_cap(limit) <= admitted <= 640
    assert sum([(await r.hit((limit, "a"))).allowed for r in replicas for _ in range(30)]) <= 640 - admitted


@pytest.mark.parametrize("requests", [1, 5, 64, 100, 700])
async def test_random_interleavings_over_two_replicas_never_admit_more_than_the_limit(
    redis: Redis, requests: int
) -> None:
    """Hypothesis: rounds of concurrent runs of requests in one or two of a caller's buckets, spread over two limiters
    on one Redis, some rounds in the next window. Per bucket and window, the requests admitted never pass its limit."""
    loop = asyncio.get_running_loop()
    first, second = Limit("ip", requests, 60), Limit("subject", max(1, requests // 2), 60)
    bucket_sets = [((first, "c"),), ((second, "c"),), ((first, "c"), (second, "c"))]
    # A round: whether it starts the next window, then its runs: (replica, bucket set, requests one after another).
    runs = st.tuples(st.integers(0, 1), st.integers(0, 2), st.integers(1, 12))
    rounds = st.lists(
        st.tuples(st.integers(0, 5).map(lambda n: n == 0), st.lists(runs, min_size=1, max_size=10)),
        min_size=1,
        max_size=12,
    )

    async def scenario(plan: list[tuple[bool, list[tuple[int, int, int]]]]) -> None:
        clock = Clock(T0)
        prefix = unique("rl")
        replicas = [RateLimiter(redis, prefix=prefix, clock=clock) for _ in range(2)]
        admitted: Counter[tuple[str, int]] = Counter()

        async def run(replica: int, buckets: int, times: int, window: int) -> None:
            for _ in range(times):
                if (await replicas[replica].hit(*bucket_sets[buckets])).allowed:
                    admitted.update((limit.name, window) for limit, _ in bucket_sets[buckets])

        for next_window, concurrent in plan:
            if next_window:
                clock.now += 60
            await asyncio.gather(*(run(r, b, n, int(clock.now // 60)) for r, b, n in concurrent))
        for (name, _), count in admitted.items():
            assert count <= (first if name == "ip" else second).requests

    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(rounds)
    def check(plan: list[tuple[bool, list[tuple[int, int, int]]]]) -> None:
        asyncio.run_coroutine_threadsafe(scenario(plan), loop).result(timeout=60)

    await asyncio.to_thread(check)
    # Alone on one replica, in one bucket: exactly the limit one request at a time; concurrent ones may find Redis
    # full while a token leased by another is on its way here (at most a cap of them, never admitted).
    limiter = RateLimiter(redis, prefix=unique("rl"), clock=Clock(T0))
    assert sum([(await limiter.hit((first, "c"))).allowed for _ in range(requests + 3)]) == requests
    limiter = RateLimiter(redis, prefix=unique("rl"), clock=Clock(T0))
    admitted = 0
    for _ in range(requests // 10 + 1):  # in rounds of 10 concurrent: redis-py's pool has 100 connections
        decisions = await asyncio.gather(*(limiter.hit((first, "c")) for _ in range(10)))
        admitted += sum(d.allowed for d in decisions)
    assert requests - lease_cap(first) <= admitted <= requests


async def test_the_lease_table_is_bounded_and_drops_past_windows(redis: Redis) -> None:
    """Many callers (an attacker's subjects or addresses) evict the least recently hit bucket, losing its tokens:
    never admitted, so the limit still holds; an entry of a past window goes as soon as a new bucket arrives."""
    prefix = unique("rl")
    clock = Clock(T0)
    limit = Limit("subject", 640, 60)
    limiter = RateLimiter(redis, prefix=prefix, clock=clock, max_leases=3)
    for caller in ("a", "a", "b", "c", "d", "e"):
        assert (await limiter.hit((limit, caller))).allowed
    assert limiter.leases_held == 3
    # "a" held one token (leases 1 and 2) and was evicted: its lease starts again, the lost token stays counted.
    assert (await limiter.hit((limit, "a"))).allowed
    assert await count_of(redis, prefix, limit, "a") == 1 + 2 + 1
    admitted = 2
    while (await limiter.hit((limit, "a"))).allowed:
        admitted += 1
        await limiter.hit((limit, f"other-{admitted % 5}"))  # keep evicting "a" now and then
    assert admitted <= 640
    clock.now = T0 + 50  # every entry is of a past window
    assert (await limiter.hit((limit, "z"))).allowed
    assert limiter.leases_held == 1


async def test_redis_down_allows_requests_with_a_warning_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    (port,) = free_ports(1)
    client = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.5, socket_timeout=0.5)
    clock = Clock(T0)
    limiter = RateLimiter(client, clock=clock)
    try:
        with caplog.at_level(logging.WARNING, logger="kassa.gateway.ratelimit"):
            decisions = [await limiter.hit((SUBJECT, "a"), (IP, "192.0.2.1")) for _ in range(3)]
            clock.now = T0 + 60
            decisions.append(await limiter.hit((SUBJECT, "a")))
    finally:
        await client.aclose()
    assert all(d.allowed for d in decisions)
    assert len([r for r in caplog.records if "rate limiter unavailable" in r.message]) == 2
    # Nothing was leased, so nothing is held or pending: when Redis is back, the count starts from its reply.
    assert all(lease.tokens == 0 and lease.pending == 0 for lease in limiter._leases.values())
