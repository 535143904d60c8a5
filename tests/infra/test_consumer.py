"""The event consumer against real NATS and Postgres (DESIGN.md §3 events, §4.5: no consumer applies an event twice).

The handler here is written the way every Kassa handler is: its effect and the inbox claim commit
together. What is checked is that each event's effect happens exactly once and nothing is left
behind — through a lost ack, a handler that hangs, a batch slower than ack_wait with a second
replica waiting, an ack that cannot be sent, and a NATS restart in the middle of a fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import nats.errors
import pytest
import pytest_asyncio
import sqlalchemy as sa
from helpers import drained, engine_for_tests, private_nats
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.localstack import StackEndpoints
from infra import events, faults
from infra.consumer import Event, EventConsumer
from infra.events import connect, ensure_streams, subject
from infra.outbox import claim_inbox, inbox_table

pytestmark = pytest.mark.integration

EVENT_TYPE = "Happened"


@pytest.fixture(autouse=True)
def _no_faults_after() -> Iterator[None]:
    yield
    faults.configure(None)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine(stack: StackEndpoints) -> AsyncIterator[AsyncEngine]:
    async with engine_for_tests(stack.database_url, "consumer", pool_size=4) as eng:
        yield eng


@dataclass
class Effects:
    """A handler whose effect (a row per application) commits with its inbox claim, and what it saw."""

    engine: AsyncEngine
    inbox: sa.Table
    applied: sa.Table
    consumer: str
    calls: Counter[str] = field(default_factory=Counter)
    running: Counter[str] = field(default_factory=Counter)
    overlapped: set[str] = field(default_factory=set)
    hang_first: set[str] = field(default_factory=set)
    seconds: float = 0.0

    async def __call__(self, event: Event) -> str:
        self.calls[event.event_id] += 1
        self.running[event.event_id] += 1
        if self.running[event.event_id] > 1:
            self.overlapped.add(event.event_id)
        try:
            if event.event_id in self.hang_first:
                self.hang_first.discard(event.event_id)
                await asyncio.Event().wait()
            await asyncio.sleep(self.seconds)
            async with self.engine.begin() as conn:
                if not await claim_inbox(conn, self.inbox, self.consumer, event.event_id):
                    return "duplicate"
                await conn.execute(self.applied.insert().values(event_id=event.event_id))
            return "applied"
        finally:
            self.running[event.event_id] -= 1

    async def counts(self) -> Counter[str]:
        async with self.engine.connect() as conn:
            return Counter((await conn.scalars(sa.select(self.applied.c.event_id))).all())


@pytest_asyncio.fixture(loop_scope="session")
async def service(monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"cs{uuid.uuid4().hex[:10]}"
    monkeypatch.setitem(events.STREAMS, name, f"KASSA_{name.upper()}")
    return name


@pytest_asyncio.fixture(loop_scope="session")
async def effects(engine: AsyncEngine, service: str) -> AsyncIterator[Effects]:
    metadata = sa.MetaData(schema=service)
    inbox = inbox_table(metadata)
    applied = sa.Table("applied", metadata, sa.Column("event_id", sa.Text, nullable=False))
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{service}"'))
        await conn.run_sync(metadata.create_all)
    yield Effects(engine, inbox, applied, consumer=f"test-{service}")
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA "{service}" CASCADE'))


@pytest_asyncio.fixture(loop_scope="session")
async def js(stack: StackEndpoints, service: str) -> AsyncIterator[Any]:
    nc, jsc = await connect(stack.nats_url, "consumer-tests")
    await ensure_streams(jsc, [service])
    yield jsc
    with contextlib.suppress(NotFoundError):
        await jsc.delete_stream(events.STREAMS[service])
    await nc.close()


async def publish(js: Any, service: str, count: int, ids: list[str] | None = None) -> list[str]:
    """``count`` events (or these ``ids`` again: JetStream drops a repeat), each of its own aggregate."""
    ids = ids or [str(uuid.uuid4()) for _ in range(count)]
    for n, event_id in enumerate(ids):
        envelope = {"event_id": event_id, "event_type": EVENT_TYPE, "aggregate_id": f"agg-{n}", "data": {"n": n}}
        await js.publish(subject(service, EVENT_TYPE), json.dumps(envelope).encode(), headers={"Nats-Msg-Id": event_id})
    return ids


def consumer(js: Any, service: str, effects: Effects, **kwargs: Any) -> EventConsumer:
    settings = {"ack_wait_seconds": 2, "retry_delay_seconds": 0.2, **kwargs}
    return EventConsumer(
        js, name=effects.consumer, service=service, event_types=[EVENT_TYPE], handler=effects, **settings
    )


@contextlib.asynccontextmanager
async def running(*consumers: EventConsumer) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(c.run()) for c in consumers]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def settled(js: Any, service: str, effects: Effects, ids: list[str], seconds: float = 20.0) -> None:
    """Wait (bounded) until every event was applied and JetStream holds nothing unacknowledged."""
    for _ in range(int(seconds / 0.1)):
        if set(await effects.counts()) >= set(ids) and await drained(js, effects.consumer, events.STREAMS[service]):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not settled after {seconds}s: applied {await effects.counts()}, calls {effects.calls}")


async def test_an_effect_whose_ack_was_lost_is_redelivered_and_applied_once(js, service, effects) -> None:
    (event_id,) = await publish(js, service, 1)
    faults.configure("consumer.*.after_effect=error#1")  # applied and committed, then "crashed" before the ack

    async with running(consumer(js, service, effects)):
        await settled(js, service, effects, [event_id])

    assert effects.calls[event_id] == 2  # redelivered...
    assert await effects.counts() == {event_id: 1}  # ...and the inbox kept the effect to one


async def test_a_hung_handler_is_cut_off_and_the_rest_of_the_batch_goes_on(js, service, effects) -> None:
    ids = await publish(js, service, 3)
    effects.hang_first = {ids[0]}

    async with running(consumer(js, service, effects, ack_wait_seconds=4, handler_timeout_seconds=1)):
        await settled(js, service, effects, ids)

    assert effects.calls == {ids[0]: 2, ids[1]: 1, ids[2]: 1}
    assert await effects.counts() == dict.fromkeys(ids, 1)


async def test_a_slow_batch_is_not_redelivered_to_another_replica_while_it_waits(js, service, effects) -> None:
    ids = await publish(js, service, 8)
    effects.seconds = 0.6  # the batch takes about 5 s, ack_wait is 2 s

    first = consumer(js, service, effects)
    async with running(first):
        await asyncio.sleep(0.5)  # the first replica has fetched the whole batch
        async with running(consumer(js, service, effects)):
            await settled(js, service, effects, ids)

    assert effects.overlapped == set()
    assert effects.calls == dict.fromkeys(ids, 1)
    assert await effects.counts() == dict.fromkeys(ids, 1)


async def test_two_replicas_on_their_own_connections_share_the_durable_consumer_and_apply_each_event_once(
    stack: StackEndpoints, js, service, effects
) -> None:
    """What ``kassa up --replicas 2`` runs: two processes, each its own NATS connection, one durable consumer."""
    ids = await publish(js, service, 40)
    effects.seconds = 0.02
    other = dataclasses.replace(effects, calls=Counter(), running=Counter(), overlapped=set())
    nc, second_js = await connect(stack.nats_url, "consumer-tests-replica-2")
    try:
        async with running(consumer(js, service, effects, batch=4), consumer(second_js, service, other, batch=4)):
            await settled(js, service, effects, ids)
    finally:
        await nc.close()

    assert await effects.counts() == dict.fromkeys(ids, 1)
    # Both replicas worked, on different events: none was handled by both.
    assert effects.calls and other.calls
    assert not set(effects.calls) & set(other.calls)
    assert sum(effects.calls.values()) + sum(other.calls.values()) == len(ids)


async def test_an_ack_that_cannot_be_sent_does_not_stop_the_consumer(js, service, effects, monkeypatch) -> None:
    ids = await publish(js, service, 3)
    real_ack = Msg.ack
    failed: list[str] = []

    async def ack_failing_once(msg: Msg) -> None:
        if not failed:
            failed.append(msg.subject)
            raise nats.errors.ConnectionClosedError
        await real_ack(msg)

    monkeypatch.setattr(Msg, "ack", ack_failing_once)
    async with running(consumer(js, service, effects, ack_wait_seconds=1)):
        await settled(js, service, effects, ids)

    assert failed
    assert await effects.counts() == dict.fromkeys(ids, 1)
    assert sum(effects.calls.values()) == 4  # the unacknowledged one came back once, and changed nothing


async def test_a_nats_crash_mid_batch_loses_nothing_and_applies_nothing_twice(service, effects) -> None:
    effects.seconds = 0.1
    with private_nats() as server:
        await asyncio.sleep(0.5)
        nc, jsc = await connect(server.url, "consumer-tests-crash")
        try:
            await ensure_streams(jsc, [service])
            before = await publish(jsc, service, 10)
            async with running(consumer(jsc, service, effects, ack_wait_seconds=3)):
                await asyncio.sleep(0.5)  # some applied and acknowledged, some still waiting in the batch
                server.kill()
                await asyncio.sleep(1.0)
                server.start()
                after = [str(uuid.uuid4()) for _ in range(5)]
                for _ in range(100):  # publish more once the server is back
                    with contextlib.suppress(nats.errors.Error, TimeoutError):
                        await publish(jsc, service, 5, after)
                        break
                    await asyncio.sleep(0.2)
                await settled(jsc, service, effects, before + after, seconds=30)
        finally:
            await nc.close()

    assert await effects.counts() == dict.fromkeys(before + after, 1)


async def test_a_consumer_created_from_now_on_skips_the_history_and_resumes_where_it_left_off(
    js, service, effects
) -> None:
    """``from_now_on`` (the notification service's consumers): a first deployment does not replay days of
    events; a restart of the same durable consumer still gets what was published while it was away."""
    history = await publish(js, service, 3)
    first = consumer(js, service, effects, from_now_on=True)
    async with running(first):
        await asyncio.sleep(0.5)  # the durable consumer exists now
        live = await publish(js, service, 2)
        await settled(js, service, effects, live)
    while_away = await publish(js, service, 1)
    async with running(consumer(js, service, effects, from_now_on=True)):
        await settled(js, service, effects, live + while_away)
    assert set(await effects.counts()) == set(live + while_away)
    assert not set(history) & set(effects.calls)
