"""Redis is a filter in front of ConfirmCheckout, not its source of truth (real Postgres and Redis, fake neighbours).

Down, paused, wiped or holding a dead process's lock, Redis never decides an answer: the durable guard
(the session's status and ``confirm_requests``) does, every call to Redis is bounded by a short
timeout, and a placed order is never answered with INTERNAL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace

import grpc
import pytest
import sqlalchemy as sa
from helpers import bearer, unique
from redis.asyncio import Redis
from redis.crc import key_slot

from checkout.biz.checkout.update_state import StateUpdate
from checkout.biz.ports import Gateways
from checkout.biz.retry import RetryPolicy
from checkout.bootstrap import Container, build
from checkout.data.redis_store import DEGRADED, RedisIdempotencyStore
from checkout.data.tables import checkout_sessions
from checkout.model.catalog import Address, OrderDraft, OrderRef
from infra import faults
from infra.auth import mint_token
from infra.config import Settings
from infra.grpc_errors import error_info
from infra.runner import running_service
from kassa.checkout.v1 import checkout_service_pb2 as co
from kassa.checkout.v1 import checkout_service_pb2_grpc as co_grpc
from kassa.common.v1 import money_pb2
from kassa.order.v1 import order_pb2
from kernel.caller import Caller
from kernel.money import Money
from tests.checkout.fakes import FakeOrderGateway, fake_gateways

pytestmark = pytest.mark.integration

ADDRESS = Address("Ada Lovelace", "12 Analytical St", "", "London", "", "N1 9GU", "GB", "")
FAST_RETRY = RetryPolicy(attempts=2, initial_seconds=0.001, max_seconds=0.002)
# The gateway's deadline for ConfirmCheckout (3 RPC deadlines): no answer may take longer.
DEADLINE = 15.0


@dataclass
class Checkout:
    container: Container
    stub: co_grpc.CheckoutServiceStub
    gateways: Gateways
    settings: Settings


@contextlib.asynccontextmanager
async def serving(settings: Settings, gateways: Gateways | None = None) -> AsyncIterator[Checkout]:
    gateways = gateways or fake_gateways()
    holder: dict[str, Container] = {}

    async def boot(s: Settings, stack: AsyncExitStack):  # type: ignore[no-untyped-def]
        holder["c"] = await build(s, stack, gateways, retry=FAST_RETRY)
        return holder["c"].app

    async with (
        running_service(boot, settings, "127.0.0.1:0", run_workers=False) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield Checkout(holder["c"], co_grpc.CheckoutServiceStub(channel), gateways, settings)


@contextlib.asynccontextmanager
async def black_hole() -> AsyncIterator[str]:
    """A Redis URL whose server accepts connections and never answers (a paused or wedged Redis)."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(4096):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _ready(checkout: Checkout, customer_id: str) -> tuple[str, money_pb2.Money]:
    c, caller = checkout.container, Caller(customer_id)
    sku = unique("SKU")
    checkout.gateways.pricing.add(sku, 1000)  # type: ignore[attr-defined]
    checkout.gateways.inventory.stock[sku] = 2  # type: ignore[attr-defined]
    cart = await c.carts.create(caller, "USD")
    await c.carts.add_item(caller, cart.cart_id, sku, 2)
    session, _ = await c.start(caller, cart.cart_id)
    update = StateUpdate(
        email="ada@example.com", shipping_address=ADDRESS, shipping_method="standard", payment_method="tok_visa"
    )
    session = await c.state.update(caller, session.session_id, update)
    assert session.preview is not None
    total = money_pb2.Money(currency_code="USD", amount_minor=session.preview.grand_total_minor)
    return session.session_id, total


async def _confirm(checkout: Checkout, md, session_id: str, key: str, total) -> co.ConfirmCheckoutResponse:
    request = co.ConfirmCheckoutRequest(session_id=session_id, idempotency_key=key, expected_grand_total=total)
    return await checkout.stub.ConfirmCheckout(request, metadata=md, timeout=DEADLINE)


async def _confirm_and_replay(checkout: Checkout, customer_id: str) -> tuple[co.ConfirmCheckoutResponse, float]:
    md = bearer(mint_token(checkout.settings.jwt_secret, customer_id))
    session_id, total = await _ready(checkout, customer_id)
    key = unique("key")
    started = time.monotonic()
    first = await _confirm(checkout, md, session_id, key, total)
    elapsed = time.monotonic() - started
    assert first.order_status == order_pb2.ORDER_STATUS_CONFIRMED
    again = await _confirm(checkout, md, session_id, key, total)
    assert again == first
    assert checkout.gateways.payment.count("authorize") == 1  # type: ignore[attr-defined]
    assert checkout.gateways.order.count("create_order") == 1  # type: ignore[attr-defined]
    return first, elapsed


async def test_with_redis_down_confirm_answers_from_postgres_and_replays_the_same(settings, customer_id) -> None:
    down = replace(settings, redis_url=f"redis://127.0.0.1:{_closed_port()}/0")
    before = sum(DEGRADED.values())
    async with serving(down) as checkout:
        first, elapsed = await _confirm_and_replay(checkout, customer_id)
    assert first.order_id and elapsed < 5
    assert sum(DEGRADED.values()) > before  # and it says so


async def test_with_redis_paused_confirm_never_waits_past_its_deadline(settings, customer_id) -> None:
    async with black_hole() as url, serving(replace(settings, redis_url=url)) as checkout:
        first, elapsed = await _confirm_and_replay(checkout, customer_id)
    assert first.order_id
    # A handful of short timeouts at most, then Redis is left alone for a while: far within the deadline.
    assert elapsed < 5


async def test_redis_flushed_between_confirm_and_replay_changes_nothing(served, customer_id, settings) -> None:
    checkout = Checkout(served.container, co_grpc.CheckoutServiceStub(served.channel), served.container.gateways,
                        settings)  # fmt: skip
    md = bearer(mint_token(settings.jwt_secret, customer_id))
    session_id, total = await _ready(checkout, customer_id)
    key = unique("key")
    first = await _confirm(checkout, md, session_id, key, total)
    redis = Redis.from_url(settings.redis_url)
    try:
        await redis.flushall()
    finally:
        await redis.aclose()
    assert await _confirm(checkout, md, session_id, key, total) == first


class _PausesRedis(FakeOrderGateway):
    """Orders as usual; the moment one is placed, Redis stops taking writes (CLIENT PAUSE … WRITE)."""

    def __init__(self, redis_url: str, seconds: float) -> None:
        super().__init__()
        self._url, self._ms = redis_url, int(seconds * 1000)

    async def create_order(self, draft: OrderDraft) -> OrderRef:
        ref = await super().create_order(draft)
        redis = Redis.from_url(self._url)
        try:
            await redis.execute_command("CLIENT", "PAUSE", self._ms, "WRITE")
        finally:
            await redis.aclose()
        return ref


async def test_redis_pausing_after_the_order_is_placed_never_turns_it_into_an_error(settings, customer_id) -> None:
    gateways = fake_gateways()
    gateways = replace(gateways, order=_PausesRedis(settings.redis_url, seconds=8))
    async with serving(settings, gateways) as checkout:
        md = bearer(mint_token(settings.jwt_secret, customer_id))
        session_id, total = await _ready(checkout, customer_id)
        started = time.monotonic()
        try:
            first = await _confirm(checkout, md, session_id, unique("key"), total)
        finally:
            redis = Redis.from_url(settings.redis_url)
            try:
                await redis.execute_command("CLIENT", "UNPAUSE")
            finally:
                await redis.aclose()
    assert first.order_id and first.order_status == order_pb2.ORDER_STATUS_CONFIRMED
    assert time.monotonic() - started < 5


class SimulatedCrash(BaseException):
    pass


class _CrashingOs:
    def __getattr__(self, name: str) -> object:
        return getattr(os, name)

    @staticmethod
    def _exit(code: int) -> None:
        raise SimulatedCrash(code)


@pytest.mark.parametrize(
    ("point", "forward"),
    [("checkout.confirm.after_capture", True), ("checkout.confirm.after_authorize", False)],
)
async def test_a_retry_after_a_crash_is_answered_by_what_recovery_did_not_by_the_dead_process_lock(
    served, customer_id, settings, *, monkeypatch, point, forward
) -> None:
    """The process died mid-saga holding the Redis lock; recovery finished the session (forward once the
    order existed, undone before). The client's retry of the same request is answered from Postgres at
    once, with the lock still there and Redis's copy of the answer gone."""
    checkout = Checkout(served.container, co_grpc.CheckoutServiceStub(served.channel), served.container.gateways,
                        settings)  # fmt: skip
    md = bearer(mint_token(settings.jwt_secret, customer_id))
    session_id, total = await _ready(checkout, customer_id)
    key = unique("key")
    monkeypatch.setattr(faults, "os", _CrashingOs())
    faults.configure(f"{point}=crash#1")
    try:
        with pytest.raises(SimulatedCrash):
            await served.container.confirm(Caller(customer_id), session_id, key, _money(total))
    finally:
        faults.configure(None)
    # What the dead process left in Redis: its lock on the key (taken again here, as the simulated crash
    # ran the lock's `finally`).
    prefix = "kassa:checkout:confirm"
    lock, cached = f"{prefix}:{{{customer_id}:{key}}}:lock", f"{prefix}:{{{customer_id}:{key}}}:result"
    redis = Redis.from_url(settings.redis_url)
    try:
        assert await redis.set(lock, "dead-process", nx=True, px=900_000)
        err = await _error(_confirm(checkout, md, session_id, key, total))
        assert err.code() is grpc.StatusCode.ABORTED  # still being confirmed: CHECKOUT_IN_PROGRESS
        # ... until recovery finishes it.
        await _age(served, session_id)
        assert await served.container.recovery.recover_one(session_id)
        await redis.delete(cached)
        if forward:
            answer = await _confirm(checkout, md, session_id, key, total)
            assert answer.order_id and answer.order_status == order_pb2.ORDER_STATUS_CONFIRMED
        else:
            # Undone: the request is over, and says so (it was SESSION_NOT_OPEN: recovery kept no answer).
            err = await _error(_confirm(checkout, md, session_id, key, total))
            assert err.code() is grpc.StatusCode.ABORTED, err.details()
            assert error_info(err).reason == "UNAVAILABLE" and "nothing was charged" in err.details()
        assert await redis.get(lock) == b"dead-process"  # the lock was still there; it decided nothing
    finally:
        await redis.delete(lock)
        await redis.aclose()
    if forward:
        async with served.container.uow.read() as tx:
            stored = await tx.sessions.get(session_id)
        assert stored is not None and stored.result is not None and answer.order_id == stored.result.order_id


def _money(total: money_pb2.Money) -> Money:
    return Money(total.currency_code, total.amount_minor)


async def _error(call) -> grpc.aio.AioRpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


async def _age(served, session_id: str) -> None:
    """As if the replica driving this session had stopped writing progress an hour ago."""
    async with served.container.engine.begin() as conn:
        await conn.execute(
            checkout_sessions.update()
            .where(checkout_sessions.c.session_id == session_id)
            .values(confirm_started_at=sa.func.now() - sa.text("interval '1 hour'"))
        )


async def test_the_lock_lives_as_long_as_its_holder_and_lapses_soon_after_it_dies(settings) -> None:
    redis = Redis.from_url(settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
    prefix = unique("kassa:test")
    store = RedisIdempotencyStore(
        redis, prefix=prefix, lock_lease_ms=300, lock_max_ms=60_000, result_ttl_seconds=60, timeout_seconds=0.5,
    )  # fmt: skip
    other = RedisIdempotencyStore(
        redis, prefix=prefix, lock_lease_ms=300, lock_max_ms=60_000,
        result_ttl_seconds=60, timeout_seconds=0.5,
    )  # fmt: skip
    try:
        token, _ = await store.begin("k")
        assert token is not None
        assert 0 < await redis.pttl(store._keys("k")[1]) <= 300
        await asyncio.sleep(0.9)  # three leases: renewed while its holder runs
        assert await other.begin("k") == (None, None)
        await store.end("k", token, None)
        again, _ = await other.begin("k")
        assert again is not None

        # Its holder dies (nothing renews it, nothing releases it): free again within one lease.
        for handle in other._held.values():
            handle.cancel()
        await asyncio.sleep(0.45)
        assert (await store.begin("k"))[0] is not None
    finally:
        for s in (store, other):
            for handle in s._held.values():
                handle.cancel()
        await redis.aclose()


async def test_begin_and_end_are_one_round_trip_each(settings) -> None:
    """ConfirmCheckout's two calls to Redis: the cached answer or else the lock, then the answer cached with the
    lock's release; a lock no longer ours is left alone, and nothing to do sends nothing."""
    redis = Redis.from_url(settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
    sent: list[str] = []
    execute = redis.execute_command

    async def counted(*args: object, **kwargs: object) -> object:
        sent.append(str(args[0]).upper())
        return await execute(*args, **kwargs)

    redis.execute_command = counted  # type: ignore[method-assign]
    prefix = unique("kassa:test")
    store, other = (
        RedisIdempotencyStore(
            redis, prefix=prefix, lock_lease_ms=300, lock_max_ms=60_000, result_ttl_seconds=60, timeout_seconds=0.5
        )
        for _ in range(2)
    )
    try:
        await store.end("warm-up", (await store.begin("warm-up"))[0], b"{}")  # the scripts loaded on the server
        sent.clear()

        token, cached = await store.begin("k")
        assert token is not None and cached is None and sent == ["EVALSHA"]
        assert 0 < await redis.pttl(store._keys("k")[1]) <= 300  # a lease, renewed while its holder runs
        assert await other.begin("k") == (None, None)  # held by another
        sent.clear()
        await store.end("k", token, b'{"answer": 1}')
        assert sent == ["EVALSHA"]
        assert await redis.exists(store._keys("k")[1]) == 0
        assert 0 < await redis.ttl(store._keys("k")[0]) <= 60
        sent.clear()
        assert await other.begin("k") == (None, b'{"answer": 1}')  # a replay: the answer, and no lock taken
        assert sent == ["EVALSHA"] and await redis.exists(store._keys("k")[1]) == 0

        sent.clear()
        await store.end("nothing", None, None)
        assert sent == []
        token, _ = await store.begin("lapsed")
        await redis.set(store._keys("lapsed")[1], "another-holder")  # ours lapsed and another took it
        await store.end("lapsed", token, None)
        assert await redis.get(store._keys("lapsed")[1]) == b"another-holder"
        assert await redis.exists(store._keys("lapsed")[0]) == 0
    finally:
        for s in (store, other):
            for handle in s._held.values():
                handle.cancel()
        await redis.aclose()


@pytest.mark.parametrize("key", ["cust-ada:key-1", "cust-ada:{odd}key", "cust-ada:key}{", "c:" + "x" * 200])
async def test_both_keys_of_a_request_share_one_cluster_slot(key: str) -> None:
    """Redis Cluster runs a script only on keys of one hash slot: a request's lock and answer share a hash tag."""
    redis = Redis.from_url("redis://127.0.0.1:1/0")  # never connected: only the key names are asked
    try:
        store = RedisIdempotencyStore(
            redis, prefix="kassa:checkout:confirm", lock_lease_ms=300, lock_max_ms=60_000, result_ttl_seconds=60,
            timeout_seconds=0.5,
        )  # fmt: skip
        result, lock = store._keys(key)
        assert (result, lock) == (f"kassa:checkout:confirm:{{{key}}}:result", f"kassa:checkout:confirm:{{{key}}}:lock")
        assert key_slot(result.encode()) == key_slot(lock.encode())
    finally:
        await redis.aclose()
