"""The outbox publisher against real Postgres and NATS (DESIGN.md §3 events, §4.5 lost event).

Each test has an outbox table in a schema of its own and a stream of its own, so publishers here never
see another test's rows. What is checked is what reached the stream: every event once, each
aggregate's events in the order they were written, nothing left unsent — through a crash after the
PubAck, a failed publish, a broker that stalls, two replicas racing, and a NATS restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import nats.errors
import pytest
import pytest_asyncio
import sqlalchemy as sa
from helpers import RoundTrips, Trips, engine_for_tests, private_nats
from nats.js.errors import NotFoundError
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.localstack import StackEndpoints
from infra import events, faults
from infra.events import connect, ensure_streams
from infra.outbox import OutboxPublisher, OutboxTx, add_event, outbox_table
from infra.outbox_cte import OutboxCte, returned_a_row

pytestmark = pytest.mark.integration

FAST = {"lease_seconds": 2, "publish_timeout_seconds": 0.5, "poll_interval": 0.05, "max_idle_interval": 0.2}


@pytest.fixture(autouse=True)
def _no_faults_after() -> Iterator[None]:
    yield
    faults.configure(None)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine(stack: StackEndpoints) -> AsyncIterator[AsyncEngine]:
    async with engine_for_tests(stack.database_url, "outbox", pool_size=4) as eng:
        yield eng


@dataclass
class Outbox:
    """One test's outbox table, service name and stream."""

    engine: AsyncEngine
    table: sa.Table
    service: str

    @property
    def stream(self) -> str:
        return events.STREAMS[self.service]

    async def add(self, aggregate_id: str, count: int = 1) -> list[uuid.UUID]:
        """``count`` events of one aggregate, one transaction each (the order they are written in)."""
        ids = []
        for n in range(count):
            async with self.engine.begin() as conn:
                ids.append(
                    await add_event(
                        conn, self.table, service=self.service, event_type="Happened", aggregate_id=aggregate_id,
                        data={"n": n},
                    )
                )  # fmt: skip
        return ids

    async def rows(self) -> dict[uuid.UUID, sa.Row[Any]]:
        async with self.engine.connect() as conn:
            result = await conn.execute(sa.select(self.table).order_by(self.table.c.created_at))
            return {row.event_id: row for row in result}

    async def written_order(self) -> dict[str, list[str]]:
        """Each aggregate's event ids in the order they were written."""
        order: dict[str, list[str]] = {}
        for row in (await self.rows()).values():
            order.setdefault(row.aggregate_id, []).append(str(row.event_id))
        return order

    async def unsent(self) -> int:
        async with self.engine.connect() as conn:
            return int(await conn.scalar(sa.select(sa.func.count()).where(self.table.c.status != "sent")))


def publisher(outbox: Outbox, js: Any, **kwargs: Any) -> OutboxPublisher:
    return OutboxPublisher(outbox.engine, outbox.table, js, **{**FAST, **kwargs})


@pytest_asyncio.fixture(loop_scope="session")
async def outbox(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Outbox]:
    service = f"ob{uuid.uuid4().hex[:10]}"
    monkeypatch.setitem(events.STREAMS, service, f"KASSA_{service.upper()}")
    table = outbox_table(sa.MetaData(schema=service))
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{service}"'))
        await conn.run_sync(table.metadata.create_all)
    yield Outbox(engine, table, service)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA "{service}" CASCADE'))


@pytest_asyncio.fixture(loop_scope="session")
async def js(stack: StackEndpoints, outbox: Outbox) -> AsyncIterator[Any]:
    """JetStream on the test stack, with this test's stream (a 10 s duplicate window, as FAST's lease needs)."""
    nc, jsc = await connect(stack.nats_url, "outbox-tests")
    await ensure_streams(jsc, [outbox.service], duplicate_window=10)
    yield jsc
    with contextlib.suppress(NotFoundError):
        await jsc.delete_stream(outbox.stream)
    await nc.close()


async def stream_ids(js: Any, stream: str) -> list[str]:
    """The Nats-Msg-Id of every message in the stream, in stream order."""
    state = (await js.stream_info(stream)).state
    ids = []
    for seq in range(state.first_seq, state.last_seq + 1) if state.messages else ():
        msg = await js.get_msg(stream, seq)
        ids.append(msg.headers["Nats-Msg-Id"])
    return ids


async def assert_each_once_in_order(outbox: Outbox, js: Any) -> None:
    published = await stream_ids(js, outbox.stream)
    written = await outbox.written_order()
    assert len(published) == len(set(published)), "an event reached the stream twice"
    assert set(published) == {eid for ids in written.values() for eid in ids}
    position = {eid: i for i, eid in enumerate(published)}
    for aggregate, ids in written.items():
        assert sorted(ids, key=position.__getitem__) == ids, f"{aggregate}'s events were published out of order"
    assert await outbox.unsent() == 0


async def drain(*publishers: OutboxPublisher, outbox: Outbox, seconds: float = 30.0) -> None:
    async with asyncio.timeout(seconds):
        while await outbox.unsent():
            for p in publishers:
                await p.publish_once()
            await asyncio.sleep(0.05)


async def all_sent(outbox: Outbox, seconds: float = 30.0) -> None:
    """Wait (bounded) for the publishers under test to send every row."""
    for _ in range(int(seconds / 0.1)):
        if not await outbox.unsent():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{await outbox.unsent()} rows still unsent after {seconds}s")


class FailingOnce:
    """JetStream whose first publish of each of ``event_ids`` fails (a timeout); everything else goes through."""

    def __init__(self, js: Any, event_ids: set[uuid.UUID]) -> None:
        self._js = js
        self._fail = {str(eid) for eid in event_ids}

    async def publish(self, subject: str, payload: bytes, **kwargs: Any) -> Any:
        msg_id = kwargs["headers"]["Nats-Msg-Id"]
        if msg_id in self._fail:
            self._fail.discard(msg_id)
            raise nats.errors.TimeoutError
        return await self._js.publish(subject, payload, **kwargs)


class StallingProxy:
    """A TCP relay to NATS that can stop passing bytes (held, not lost) and pass them on later: a stalled broker."""

    def __init__(self, target: str) -> None:
        host, _, port = target.removeprefix("nats://").rpartition(":")
        self._target = (host, int(port))
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.url = ""

    async def __aenter__(self) -> StallingProxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.url = f"nats://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *_: object) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                await self._flowing.wait()
                dst.write(data)
                await dst.drain()
        finally:
            dst.close()


async def test_a_crash_after_the_puback_republishes_and_the_stream_keeps_one_copy(outbox, js) -> None:
    ids = await outbox.add("cart-1", 2) + await outbox.add("cart-2")
    faults.configure("*.outbox.after_publish=error#1")
    first = publisher(outbox, js)

    with pytest.raises(faults.InjectedFault):
        await first.publish_once()  # published, acknowledged, then "crashed" before marking sent
    held = await outbox.rows()
    await asyncio.sleep(FAST["lease_seconds"] + 0.2)
    await drain(publisher(outbox, js), outbox=outbox)

    assert {held[eid].status for eid in ids} == {"processing"}
    assert [row.attempts for row in (await outbox.rows()).values()] == [2, 2, 2]
    await assert_each_once_in_order(outbox, js)


async def test_a_failed_event_holds_back_the_rest_of_its_aggregate(outbox, js) -> None:
    first, *rest = await outbox.add("order-1", 3)
    other = await outbox.add("order-2", 2)
    p = publisher(outbox, js)
    p._js = FailingOnce(js, {first})

    published = await p.publish_once()
    rows = await outbox.rows()
    await drain(p, outbox=outbox)

    assert published == 2  # order-2 goes on; order-1 waits for its first event
    assert [rows[eid].status for eid in other] == ["sent", "sent"]
    assert [(rows[eid].status, rows[eid].attempts) for eid in (first, *rest)] == [
        ("pending", 1),
        ("pending", 0),
        ("pending", 0),
    ]
    assert "TimeoutError" in (rows[first].last_error or "")
    await assert_each_once_in_order(outbox, js)


async def test_a_claim_never_splits_an_aggregate_between_replicas(outbox, js) -> None:
    head, tail = await outbox.add("session-1", 2)
    (lone,) = await outbox.add("session-2")
    a = publisher(outbox, js, batch_size=1)
    b = publisher(outbox, js)

    claimed_by_a = [row.event_id for row in await a.claim()]
    claimed_by_b = [row.event_id for row in await b.claim()]
    await asyncio.sleep(FAST["lease_seconds"] + 0.2)
    after_the_lease = [row.event_id for row in await b.claim()]

    assert claimed_by_a == [head]
    assert claimed_by_b == [lone]  # not session-1's second event while its first is out with A
    assert after_the_lease == [head, tail, lone]


async def test_a_stalled_broker_gives_the_batch_back_well_within_the_lease(outbox, js, stack) -> None:
    for n in range(8):
        await outbox.add(f"agg-{n}", 3)
    async with StallingProxy(stack.nats_url) as proxy:
        nc, stalled_js = await connect(proxy.url, "outbox-tests-stalled")
        try:
            proxy.stall()
            p = publisher(outbox, stalled_js, lease_seconds=4, publish_timeout_seconds=1)
            started = asyncio.get_running_loop().time()
            async with asyncio.timeout(4):
                published = await p.publish_once()
            took = asyncio.get_running_loop().time() - started
            rows = await outbox.rows()
            proxy.resume()
        finally:
            await nc.close()

    assert published == 0
    assert took < 2  # one deadline for the whole batch, not a timeout per row
    assert {row.status for row in rows.values()} == {"pending"}
    assert sorted(row.attempts for row in rows.values()) == [0] * 16 + [1] * 8  # each aggregate's head tried once


async def test_a_pass_that_outlived_its_lease_leaves_the_reclaimed_rows_alone(outbox, js) -> None:
    first, _ = await outbox.add("order-1", 2)
    await outbox.add("order-2")
    slow = publisher(outbox, js)
    slow._js = FailingOnce(js, {first})
    # The slow pass stops between its PubAcks and its bookkeeping for longer than its lease.
    faults.configure(f"*.outbox.after_publish=delay:{FAST['lease_seconds'] + 1}#1")

    slow_pass = asyncio.create_task(slow.publish_once())
    await asyncio.sleep(FAST["lease_seconds"] + 0.3)
    reclaimed = await publisher(outbox, js).publish_once()
    await slow_pass
    rows = await outbox.rows()

    assert reclaimed == 3
    assert {row.status for row in rows.values()} == {"sent"}  # the slow pass did not give order-1 back
    await assert_each_once_in_order(outbox, js)


async def test_two_publishers_one_stalled_deliver_every_event_once_in_order(outbox, js, stack) -> None:
    async def produce() -> None:
        for n in range(60):
            await outbox.add(f"agg-{n % 7}")
            await asyncio.sleep(0.03)

    async with StallingProxy(stack.nats_url) as proxy:
        nc, stalled_js = await connect(proxy.url, "outbox-tests-stalled")
        workers: list[asyncio.Task[None]] = []
        try:
            a = publisher(outbox, stalled_js, batch_size=10)
            b = publisher(outbox, js, batch_size=10)
            producer = asyncio.create_task(produce())
            await asyncio.sleep(0.2)
            proxy.stall()
            workers.append(asyncio.create_task(a.run()))
            await asyncio.sleep(0.3)
            workers.append(asyncio.create_task(b.run()))
            await asyncio.sleep(1.5)
            proxy.resume()  # what A sent while stalled arrives now, within the duplicate window
            await producer
            await all_sent(outbox)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await nc.close()

    await asyncio.sleep(0.3)  # let anything still in flight land before counting
    await assert_each_once_in_order(outbox, js)


async def test_nothing_is_lost_or_doubled_across_a_nats_crash(outbox) -> None:
    with private_nats() as server:
        await asyncio.sleep(0.5)
        nc, jsc = await connect(server.url, "outbox-tests-crash")
        task: asyncio.Task[None] | None = None
        try:
            await ensure_streams(jsc, [outbox.service])
            p = publisher(outbox, jsc, lease_seconds=4, publish_timeout_seconds=1)
            task = asyncio.create_task(p.run())
            for n in range(20):
                await outbox.add(f"agg-{n % 4}")
            await asyncio.sleep(0.5)
            server.kill()  # SIGKILL: only what was fsynced before a PubAck survives
            for n in range(20):
                await outbox.add(f"agg-{n % 4}")
                await asyncio.sleep(0.05)
            server.start()
            await all_sent(outbox)
            await assert_each_once_in_order(outbox, jsc)
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await nc.close()


class CountingPublisher(OutboxPublisher):
    """Counts the passes that published something, and how many events each carried."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.passes: list[int] = []

    async def publish_once(self) -> int:
        n = await super().publish_once()
        if n:
            self.passes.append(n)
        return n


async def test_events_committed_while_a_pass_is_recent_share_the_next_pass(outbox, js) -> None:
    """Under load a pass carries every event of its interval, not one each: a lone event goes out at once, the
    ones that follow it within ``poll_interval`` wait and go out together."""
    worker = CountingPublisher(
        outbox.engine, outbox.table, js, **{**FAST, "poll_interval": 2.0, "max_idle_interval": 3}
    )
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(2.3)  # its first (empty) pass is over an interval ago; the next waits for a notify
        await outbox.add("order-0")
        worker.notify()
        await all_sent(outbox, seconds=5)
        for n in range(1, 6):  # five events, each committed and notified within the interval that follows
            await outbox.add(f"order-{n}")
            worker.notify()
        await all_sent(outbox, seconds=10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert worker.passes == [1, 5]
    await assert_each_once_in_order(outbox, js)


async def test_a_pass_that_sends_everything_is_two_statements_without_a_transaction(outbox, js) -> None:
    """The claim and the settle are one statement each: atomic on their own, so no BEGIN/COMMIT round trips."""
    await outbox.add("order-1", 2)
    await outbox.add("order-2")
    trips = RoundTrips(outbox.engine)

    assert await publisher(outbox, js).publish_once() == 3

    assert trips.take() == Trips(statements=2, autocommit=2)
    await assert_each_once_in_order(outbox, js)


async def test_add_event_and_a_statements_own_outbox_row_carry_the_same_envelope(outbox) -> None:
    """One envelope (``infra.outbox.envelope``): an event ``add_event`` writes and one a change's statement writes
    (``infra.outbox_cte``) differ only in their id and time."""
    data = {"n": 1, "who": "someone"}
    async with outbox.engine.begin() as conn:
        separate = await add_event(
            conn, outbox.table, service=outbox.service, event_type="Happened", aggregate_id="agg-1", data=data
        )
        changed = sa.select(sa.literal(1).label("one")).cte("changed")
        row = OutboxCte(outbox.table, where=returned_a_row(changed), prefix="ev")
        params = row.params(service=outbox.service, event_type="Happened", aggregate_id="agg-1", data=data)
        await conn.execute(sa.select(sa.func.count()).select_from(changed).add_cte(row.cte), params)
    rows = await outbox.rows()
    assert len(rows) == 2
    [other] = [eid for eid in rows if eid != separate]
    a, b = rows[separate], rows[other]
    for r in (a, b):
        assert r.payload["event_id"] == str(r.event_id)
        assert set(r.payload) - {"traceparent"} == {"event_id", "event_type", "aggregate_id", "occurred_at", "data"}

    def same(payload: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in payload.items() if k not in ("event_id", "occurred_at")}

    assert same(a.payload) == same(b.payload) == {"event_type": "Happened", "aggregate_id": "agg-1", "data": data}
    assert (a.subject, a.event_type, a.aggregate_id) == (b.subject, b.event_type, b.aggregate_id)


async def test_rows_a_statement_wrote_itself_count_with_add_events(outbox) -> None:
    """``OutboxTx.count_written``: the one way a service counts the outbox rows its change's statement wrote, in the
    same ``events`` as ``add_event``'s (what wakes the publisher)."""
    async with outbox.engine.begin() as conn:
        tx = OutboxTx(conn, outbox.table, service=outbox.service)
        await tx.add_event("Happened", "agg-1", {"n": 1})
        tx.count_written(2)
        tx.count_written()
        assert tx.events == 4
        with pytest.raises(ValueError):
            tx.count_written(-1)
        assert tx.events == 4


class IdleWaits:
    """The publisher's ``idle`` wait, recorded instead of waited: returns at once, as if the timeout had passed,
    and stops the publisher after ``until`` waits. ``claims`` counts the claim statements in between."""

    def __init__(self, until: int) -> None:
        self.timeouts: list[float] = []
        self.until = until
        self.done = asyncio.Event()
        self.before: Any = None  # called before a wait is recorded (the test changes the world there)

    async def run(self, worker: OutboxPublisher) -> None:
        """Run ``worker`` until ``until`` waits were recorded, then stop it."""
        task = asyncio.create_task(worker.run())
        try:
            await asyncio.wait_for(self.done.wait(), 30)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def __call__(self, wake: asyncio.Event, seconds: float) -> None:
        if self.before is not None:
            await self.before(len(self.timeouts))
        self.timeouts.append(seconds)
        if len(self.timeouts) >= self.until:
            self.done.set()
            await asyncio.Event().wait()  # parked until the test cancels the publisher


class FailingWhile:
    """JetStream whose publishes fail while ``failing`` is set (a broker that is down)."""

    def __init__(self, js: Any) -> None:
        self._js = js
        self.failing = False

    async def publish(self, subject: str, payload: bytes, **kwargs: Any) -> Any:
        if self.failing:
            raise nats.errors.TimeoutError
        return await self._js.publish(subject, payload, **kwargs)


async def test_an_idle_publisher_polls_a_few_times_a_minute_and_a_failed_pass_is_retried_within_a_second(
    outbox, js
) -> None:
    """Idle, each empty pass doubles the wait up to ``max_idle_interval`` (15 s, was 1 s): 9 claims in the first
    minute, then 4 a minute, instead of 60. Rows a pass could not publish are retried within ``retry_interval``."""
    broker = FailingWhile(js)
    waits = IdleWaits(until=16)

    async def world(n: int) -> None:
        if n == 9:  # idle long enough: an event comes in while the broker is down
            await outbox.add("order-1")
            broker.failing = True
        elif n == 12:
            broker.failing = False

    waits.before = world
    trips = RoundTrips(outbox.engine)
    worker = OutboxPublisher(
        outbox.engine,
        outbox.table,
        broker,
        lease_seconds=2,
        publish_timeout_seconds=0.5,
        poll_interval=0.05,
        idle=waits,
    )
    await waits.run(worker)

    assert waits.timeouts == [
        0.1,
        0.2,
        0.4,
        0.8,
        1.6,
        3.2,
        6.4,
        12.8,
        15.0,
        15.0,  # idle: the backoff reaches 15 s
        # an event committed with no notify() (another process) waits for the idle sweep; its publish fails
        # (broker down): retried every second, however long the idle wait was
        1.0,
        1.0,
        1.0,
        0.05,
        0.1,
        0.2,  # published (the pass after a publish starts at poll_interval), idle again
    ]
    assert sum(waits.timeouts[:9]) < 60  # the first minute: 9 claims (was 60), then 4 a minute at 15 s each
    claims = [sql for sql, _ in trips.sent if sql.lstrip().startswith("WITH candidates")]
    assert len(claims) == 16  # one claim statement per pass, nothing else polls
    await assert_each_once_in_order(outbox, js)


@pytest.mark.parametrize(("interval", "deletes"), [(0.0, 6), (3600.0, 0)])
async def test_sent_rows_are_cleaned_up_by_the_clock_not_by_a_count_of_passes(
    outbox, js, interval: float, deletes: int
) -> None:
    """An idle publisher's passes are up to 15 s apart, so cleanup follows ``cleanup_interval`` by the clock: due at
    each of the 6 passes when it is 0, never within an hour's interval (the waits are recorded, not waited)."""
    waits = IdleWaits(until=6)
    trips = RoundTrips(outbox.engine)
    worker = OutboxPublisher(outbox.engine, outbox.table, js, poll_interval=0.05, cleanup_interval=interval, idle=waits)
    await waits.run(worker)
    assert sum(sql.lstrip().startswith("DELETE") for sql, _ in trips.sent) == deletes


async def test_an_event_is_published_as_the_envelope_postgres_stored_with_its_writers_trace(outbox, js) -> None:
    """The claim returns the envelope as text and the writer's traceparent beside it: the publisher sends the text
    as it is (no JSON parse of the JSONB and dump again per event), and the consumers read the same envelope."""
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with outbox.engine.begin() as conn:
        eid = await add_event(
            conn, outbox.table, service=outbox.service, event_type="Happened", aggregate_id="order-1", data={"n": 1}
        )
        await conn.execute(
            outbox.table.update()
            .where(outbox.table.c.event_id == eid)
            .values(payload=outbox.table.c.payload.op("||")(sa.func.jsonb_build_object("traceparent", parent)))
        )
        stored = await conn.scalar(sa.select(sa.cast(outbox.table.c.payload, sa.Text)))

    (row,) = await publisher(outbox, js).claim()
    assert (row.body, row.traceparent) == (stored, parent)
    await drain(publisher(outbox, js), outbox=outbox)

    msg = await js.get_msg(outbox.stream, 1)
    assert msg.data == stored.encode()
    envelope = json.loads(msg.data)
    assert (envelope["event_id"], envelope["data"], envelope["traceparent"]) == (str(eid), {"n": 1}, parent)
