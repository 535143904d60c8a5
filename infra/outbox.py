"""Transactional outbox: events written with the state change, published later.

A service adds ``outbox_table(metadata)`` to its schema and calls
:func:`add_event` inside the same transaction as the change (its ``SqlTx`` extends
:class:`OutboxTx`, which does so and counts the events for the unit of work). The
:class:`OutboxPublisher` worker claims pending rows with ``FOR UPDATE SKIP
LOCKED`` under a lease (rows stuck in ``processing`` past the lease are
reclaimed, so a crashed replica loses nothing), publishes them to JetStream with
``Nats-Msg-Id`` = event id within one deadline well inside the lease, each
aggregate's events in the order they were written, marks a row sent only after
JetStream acknowledged it, and deletes sent rows after a retention period. Safe
with several replicas; its guarantees are spelled out on the class.

Consumers pair this with :func:`inbox_table` / :func:`claim_inbox` so a
redelivered event has no second effect.

Migrations create the tables with :func:`create_outbox_table_v1` /
:func:`create_inbox_table_v1`. A migration is a frozen snapshot, so the versioned
column lists (``_outbox_v1``, ``_inbox_v1``) are never edited: a later change to
a table gets a ``_v2`` list, ``create_*_v2`` functions for the new migration, and
:func:`outbox_table` / :func:`inbox_table` move to the newest version.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.schema import SchemaItem

from infra import faults, metrics
from infra.db import single_statements
from infra.events import DUPLICATE_WINDOW_SECONDS
from infra.events import subject as make_subject
from infra.tracing import TRACEPARENT, current_traceparent, producer_span

if TYPE_CHECKING:
    from types import ModuleType

    from alembic.operations import Operations

__all__ = [
    "OutboxPublisher",
    "OutboxTx",
    "add_event",
    "claim_inbox",
    "create_inbox_table_v1",
    "create_outbox_table_v1",
    "envelope",
    "inbox_table",
    "outbox_table",
]

log = logging.getLogger("kassa.outbox")

# The most one publishing pass may take, whatever the lease (a quarter of it when that is shorter).
_PUBLISH_TIMEOUT_SECONDS = 10.0
# How often a publisher deletes the sent rows past their retention (one DELETE, whatever it finds).
CLEANUP_SECONDS = 600.0


async def _woken_or_timeout(wake: asyncio.Event, seconds: float) -> None:
    """Wait until ``wake`` is set or ``seconds`` have passed."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), timeout=seconds)


def _outbox_v1() -> list[SchemaItem]:
    """Version 1 of the outbox: columns, defaults, check and index (fresh objects on every call)."""
    return [
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("aggregate_id", sa.Text, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("status in ('pending','processing','sent')", name="outbox_status_valid"),
        sa.Index("outbox_pending_idx", "status", "created_at", postgresql_where=sa.text("status <> 'sent'")),
    ]


def _inbox_v1() -> list[SchemaItem]:
    """Version 1 of the inbox (fresh objects on every call)."""
    return [
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    ]


def outbox_table(metadata: sa.MetaData) -> sa.Table:
    """The outbox as the code uses it: the newest version the migrations create."""
    return sa.Table("outbox", metadata, *_outbox_v1())


def inbox_table(metadata: sa.MetaData) -> sa.Table:
    """The inbox as the code uses it: the newest version the migrations create."""
    return sa.Table("inbox", metadata, *_inbox_v1())


def create_outbox_table_v1(op: Operations | ModuleType, schema: str) -> None:
    """For a service's initial migration: CREATE TABLE outbox (version 1) and its index, in ``schema``."""
    op.create_table("outbox", *_outbox_v1(), schema=schema)


def create_inbox_table_v1(op: Operations | ModuleType, schema: str) -> None:
    """For a consuming service's initial migration: CREATE TABLE inbox (version 1), in ``schema``."""
    op.create_table("inbox", *_inbox_v1(), schema=schema)


def envelope(
    event_type: str, aggregate_id: str, data: Mapping[str, Any] | None, event_id: uuid.UUID | None = None
) -> tuple[uuid.UUID, dict[str, Any]]:
    """The event id and the payload an outbox row carries: id, type, aggregate, time, ``data`` (None: left out, for
    a statement that computes it, :mod:`infra.outbox_cte`) and the writer's trace, so the consumers of the event
    continue it (infra.tracing). The one envelope: :func:`add_event` and :mod:`infra.outbox_cte` both write it."""
    eid = event_id or uuid.uuid4()
    payload: dict[str, Any] = {
        "event_id": str(eid),
        "event_type": event_type,
        "aggregate_id": aggregate_id,
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    if data is not None:
        payload["data"] = dict(data)
    if (parent := current_traceparent()) is not None:
        payload["traceparent"] = parent
    return eid, payload


async def add_event(
    conn: AsyncConnection,
    table: sa.Table,
    *,
    service: str,
    event_type: str,
    aggregate_id: str,
    data: dict[str, Any],
    event_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Record an event in the caller's open transaction."""
    eid, payload = envelope(event_type, aggregate_id, data, event_id)
    await conn.execute(
        table.insert().values(
            event_id=eid,
            subject=make_subject(service, event_type),
            event_type=event_type,
            aggregate_id=aggregate_id,
            payload=payload,
            # The time of this statement, not of the transaction: two events of one aggregate written in
            # one transaction keep the order they were written in, which is the order they are published.
            created_at=sa.func.clock_timestamp(),
        )
    )
    return eid


class OutboxTx:
    """The outbox half of a service's Tx: ``add_event`` writes to ``table`` on ``conn`` (the Tx's transaction)
    and counts in ``events``, so :class:`infra.db.UnitOfWork` wakes the publisher only after a commit with events;
    ``count_written`` counts there the rows a change's statement wrote itself (:mod:`infra.outbox_cte`).

    ``statement_only`` (set by ``StatementUnitOfWork.statement()``, :mod:`infra.outbox_cte`): the Tx's events are
    written by its change's own statement, never by ``add_event`` (a statement of its own, which on an autocommit
    connection would commit, and be published, whether or not the change does). ``add_event`` then raises
    RuntimeError before it writes anything."""

    def __init__(self, conn: AsyncConnection, table: sa.Table, *, service: str) -> None:
        self.conn = conn
        self.events = 0
        self.statement_only = False
        self._outbox = table
        self._service = service

    async def add_event(self, event_type: str, aggregate_id: str, data: Mapping[str, Any]) -> None:
        if self.statement_only:
            raise RuntimeError(
                "an event must commit with its change: in statement() the change's statement writes it "
                "(infra.outbox_cte); add_event needs the unit of work's transaction"
            )
        await add_event(
            self.conn,
            self._outbox,
            service=self._service,
            event_type=event_type,
            aggregate_id=aggregate_id,
            data=dict(data),
        )
        self.events += 1

    def count_written(self, n: int = 1) -> None:
        """``n`` outbox rows a change's own statement wrote (:mod:`infra.outbox_cte`), counted in ``events`` as
        ``add_event``'s are, so the unit of work wakes the publisher after they commit. Call it once the statement
        has returned, with the rows it really wrote (none when its guard refused the change)."""
        if n < 0:
            raise ValueError(f"count_written: {n} rows")
        self.events += n


async def claim_inbox(conn: AsyncConnection, table: sa.Table, consumer: str, event_id: str) -> bool:
    """True the first time (consumer, event_id) is seen in this transaction's commit; False for a redelivery."""
    stmt = (
        insert(table).values(consumer=consumer, event_id=event_id).on_conflict_do_nothing().returning(table.c.event_id)
    )
    return (await conn.execute(stmt)).first() is not None


@dataclass
class _Batch:
    """What one publishing pass did with the rows it claimed."""

    sent: list[uuid.UUID] = field(default_factory=list)
    failed: dict[uuid.UUID, str] = field(default_factory=dict)


class OutboxPublisher:
    """Publishes a service's outbox to JetStream; one per service process, any number of replicas.

    What it guarantees (DESIGN.md §4.5), and how:

    * **At least once.** A row is marked sent only after its PubAck; a crash before that leaves it
      ``processing`` until its lease ends, and another pass publishes it again.
    * **Once on the stream.** Every publish carries ``Nats-Msg-Id`` = event id, and a row is never
      published twice further apart than the stream's duplicate window: a pass publishes its whole
      batch within ``publish_timeout_seconds`` (well inside the lease), so a lease never runs out
      under a pass that is still publishing, and the settings are refused unless lease + publish
      deadline + idle poll fit inside ``duplicate_window_seconds``.
    * **In order per aggregate.** A claim takes a row only when every earlier unsent row of its
      ``aggregate_id`` is in the same claim, so two replicas never hold parts of one aggregate; a
      pass publishes an aggregate's rows one after another (aggregates side by side) and stops that
      aggregate at its first failure, giving the rest back untouched.
    * **A lost lease changes nothing.** The claim's ``lease_until`` is the pass's token; it settles
      only rows still carrying it, so a pass that outlived its lease cannot undo what the replica
      that reclaimed its rows did.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        table: sa.Table,
        js: Any,
        *,
        batch_size: int = 100,
        lease_seconds: int = 60,
        publish_timeout_seconds: float | None = None,
        poll_interval: float = 0.2,
        max_idle_interval: float = 15.0,
        retry_interval: float = 1.0,
        retention_hours: int = 72,
        cleanup_interval: float = CLEANUP_SECONDS,
        duplicate_window_seconds: float = DUPLICATE_WINDOW_SECONDS,
        service: str | None = None,
        idle: Callable[[asyncio.Event, float], Awaitable[object]] = _woken_or_timeout,
    ) -> None:
        """``max_idle_interval``: the longest wait for a ``notify()`` after passes that found nothing (the sweep
        for rows no notify announced: a lease that ran out under a crashed replica, a commit in another process);
        ``retry_interval``: the longest wait after a pass that could not publish what it claimed, or failed;
        ``cleanup_interval``: how often, by the clock, sent rows past ``retention_hours`` are deleted.
        ``idle(wake, timeout)`` waits for ``wake`` or the timeout (a test records the waits instead)."""
        self._engine = engine
        self._t = table
        self._js = js
        self._batch = batch_size
        self._lease = lease_seconds
        self._publish_timeout = (
            min(_PUBLISH_TIMEOUT_SECONDS, lease_seconds / 4)
            if publish_timeout_seconds is None
            else publish_timeout_seconds
        )
        self._poll = poll_interval
        self._max_idle = max(max_idle_interval, poll_interval)
        self._max_retry = min(max(retry_interval, poll_interval), self._max_idle)
        self._idle = idle
        self._left = 0  # rows the last pass claimed and did not publish
        self._retention = retention_hours
        self._cleanup_interval = cleanup_interval
        self._wake = asyncio.Event()
        self._fault_point = f"{table.schema or 'public'}.outbox.after_publish"
        # The metrics' service label: the schema's name unless it differs from the service's (order's is "orders").
        service = service or table.schema or "public"
        self._published = metrics.OUTBOX_PUBLISHED.labels(service)
        self._failures = metrics.OUTBOX_PUBLISH_FAILURES.labels(service)
        self._lag = metrics.OUTBOX_PUBLISH_LAG.labels(service)
        self._backlog = metrics.OUTBOX_BACKLOG.labels(service)
        self._oldest = metrics.OUTBOX_OLDEST_AGE.labels(service)
        self._backlog_query = sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.extract("epoch", sa.func.now() - sa.func.min(table.c.created_at)), 0),
        ).where(table.c.status != "sent")
        if not 0 < self._publish_timeout <= lease_seconds / 2:
            raise ValueError("outbox: publish_timeout_seconds must be positive and at most half the lease")
        if lease_seconds + self._publish_timeout + self._max_idle >= duplicate_window_seconds:
            raise ValueError(
                "outbox: lease + publish timeout + idle poll must be shorter than the stream's duplicate window, "
                "or a row republished after its lease ran out would reach consumers twice"
            )

    @functools.cached_property
    def _single(self) -> AsyncEngine:
        """The engine's autocommit pool (infra.db), for the passes' one-statement writes."""
        return single_statements(self._engine)

    def notify(self) -> None:
        """Hint that rows were just committed, so the worker needn't wait for its next poll."""
        self._wake.set()

    @functools.cached_property
    def _claim_statement(self) -> sa.Update:
        """The claim (see :meth:`claim`), built once: it has no parameter that changes between passes, and a
        statement object built anew costs its construction and its cache key on every pass, idle or not."""
        t = self._t
        due = sa.or_(t.c.status == "pending", sa.and_(t.c.status == "processing", t.c.lease_until < sa.func.now()))
        candidates = (
            sa.select(t.c.event_id, t.c.aggregate_id, t.c.created_at)
            .where(due)
            .order_by(t.c.created_at, t.c.event_id)
            .limit(self._batch)
            .with_for_update(skip_locked=True)
            .cte("candidates")
        )
        earlier = t.alias("earlier")
        held_back = sa.exists().where(
            earlier.c.aggregate_id == candidates.c.aggregate_id,
            earlier.c.status != "sent",
            sa.tuple_(earlier.c.created_at, earlier.c.event_id)
            < sa.tuple_(candidates.c.created_at, candidates.c.event_id),
            earlier.c.event_id.not_in(sa.select(candidates.c.event_id).scalar_subquery()),
        )
        return (
            t.update()
            .where(t.c.event_id.in_(sa.select(candidates.c.event_id).where(~held_back)))
            .values(
                status="processing",
                attempts=t.c.attempts + 1,
                lease_until=sa.func.now() + sa.text(f"interval '{int(self._lease)} seconds'"),
            )
            .returning(
                t.c.event_id,
                t.c.subject,
                t.c.aggregate_id,
                # The envelope as Postgres prints it, published as it is: no JSON parse and dump per event here.
                sa.cast(t.c.payload, sa.Text).label("body"),
                t.c.payload[TRACEPARENT].astext.label("traceparent"),
                t.c.created_at,
                t.c.lease_until,
            )
        )

    async def claim(self) -> list[sa.Row[Any]]:
        """Lease up to ``batch_size`` due rows, oldest first, that no other pass holds an earlier row of.

        A row is due when pending or when its lease ran out. Of the oldest due rows (locked with
        SKIP LOCKED), a row is taken only if every earlier unsent row of its aggregate is taken too:
        an earlier row leased by another replica, locked by a concurrent claim, or beyond the batch
        holds the later ones back until it is sent. Rows come back in publishing order, each with
        the lease (``lease_until``) that settles it.
        """
        async with self._single.connect() as conn:  # one statement: atomic, with no BEGIN/COMMIT round trips
            rows = list((await conn.execute(self._claim_statement)).all())
        rows.sort(key=lambda r: (r.created_at, r.event_id))
        return rows

    async def publish_once(self) -> int:
        """Claim and publish one batch within the publish deadline; returns how many rows were published."""
        self._left = 0
        rows = await self.claim()
        if not rows:
            return 0
        chains: dict[str, list[sa.Row[Any]]] = {}
        for row in rows:
            chains.setdefault(row.aggregate_id, []).append(row)
        batch = _Batch()
        deadline = asyncio.get_running_loop().time() + self._publish_timeout
        await asyncio.gather(*(self._publish_chain(chain, deadline, batch) for chain in chains.values()))
        if batch.sent:
            await faults.ahit(self._fault_point)
        self._left = len(rows) - len(batch.sent)
        await self._settle(rows, rows[0].lease_until, batch)
        self._count(rows, batch)
        return len(batch.sent)

    def _count(self, rows: list[sa.Row[Any]], batch: _Batch) -> None:
        if batch.failed:
            self._failures.inc(len(batch.failed))
        if not batch.sent:
            return
        self._published.inc(len(batch.sent))
        sent = set(batch.sent)
        now = datetime.now(UTC)
        for row in rows:
            if row.event_id in sent:
                self._lag.observe(max(0.0, (now - row.created_at).total_seconds()))

    async def refresh_backlog(self) -> None:
        """Set the backlog gauges: events not sent yet, and the age of the oldest (one indexed statement)."""
        async with self._single.connect() as conn:
            count, oldest = (await conn.execute(self._backlog_query)).one()
        self._backlog.set(count)
        self._oldest.set(float(oldest))

    async def _publish_chain(self, chain: list[sa.Row[Any]], deadline: float, batch: _Batch) -> None:
        """Publish one aggregate's rows in order, each after the previous one's PubAck; stop at a failure."""
        loop = asyncio.get_running_loop()
        for row in chain:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            headers = {"Nats-Msg-Id": str(row.event_id)}
            try:
                with producer_span(f"publish {row.subject}", row.traceparent) as parent:
                    if parent:
                        headers[TRACEPARENT] = parent
                    async with asyncio.timeout(remaining):
                        await self._js.publish(row.subject, row.body.encode(), headers=headers, timeout=remaining)
            except Exception as exc:
                batch.failed[row.event_id] = repr(exc)[:500]
                return
            batch.sent.append(row.event_id)

    async def _settle(self, rows: list[sa.Row[Any]], lease: datetime, batch: _Batch) -> None:
        """Mark published rows sent and give the rest back, touching only rows this pass still holds."""
        t = self._t
        mine = sa.and_(t.c.status == "processing", t.c.lease_until == lease)
        done = set(batch.sent) | batch.failed.keys()
        untried = [row.event_id for row in rows if row.event_id not in done]
        by_error: dict[str, list[uuid.UUID]] = {}
        for eid, err in batch.failed.items():
            by_error.setdefault(err, []).append(eid)
        marked = len(batch.sent)
        # Usually every row went out: one UPDATE, in autocommit. Each statement here stands on its own anyway
        # (a crash between them leaves rows processing until their lease ends, then they go out again).
        engine = self._single if not (by_error or untried) else self._engine
        async with engine.begin() as conn:
            if batch.sent:
                result = await conn.execute(
                    t.update()
                    .where(t.c.event_id.in_(batch.sent), mine)
                    .values(status="sent", sent_at=sa.func.now(), lease_until=None)
                )
                marked = result.rowcount
            for err, eids in by_error.items():
                await conn.execute(
                    t.update()
                    .where(t.c.event_id.in_(eids), mine)
                    .values(status="pending", lease_until=None, last_error=err)
                )
            if untried:
                # Not attempted (behind their aggregate's failure, or past the deadline): undo the claim's count.
                await conn.execute(
                    t.update()
                    .where(t.c.event_id.in_(untried), mine)
                    .values(status="pending", lease_until=None, attempts=t.c.attempts - 1)
                )
        if marked < len(batch.sent):
            log.warning(
                "outbox: %d of %d published events had been reclaimed after this pass's lease ran out",
                len(batch.sent) - marked,
                len(batch.sent),
            )
        if batch.failed:
            log.warning(
                "outbox: %d events failed to publish (%d held back behind them), will retry",
                len(batch.failed),
                len(untried),
            )

    async def cleanup(self) -> int:
        t = self._t
        async with self._engine.begin() as conn:
            result = await conn.execute(
                t.delete().where(
                    t.c.status == "sent",
                    t.c.sent_at < sa.func.now() - sa.text(f"interval '{int(self._retention)} hours'"),
                )
            )
        return result.rowcount or 0

    async def run(self) -> None:
        """Publish until cancelled. Errors are logged and retried; nothing is dropped.

        A pass starts at most every ``poll_interval``: ``notify()`` after a commit starts one at once
        when the last was longer ago, and otherwise the events committed meanwhile wait for the next,
        which publishes them together. So a lone event goes out at once, and under load a pass (a claim
        and a settle transaction) carries every event of its interval instead of one each. Each empty
        pass doubles the wait for the next unprompted one, up to ``max_idle_interval``: an idle service
        wakes for its outbox a few times a minute, and every commit with events still starts a pass at
        once. A pass that failed, or gave back rows it could not publish, is retried within
        ``retry_interval`` (the broker or the database is back), however long the idle wait.
        """
        loop = asyncio.get_running_loop()
        delay = self._poll
        # The backlog gauges are refreshed between passes every REFRESH_SECONDS: never per event.
        refresh_at = loop.time()
        # Sent rows past their retention are deleted every cleanup_interval by the clock (the first after one
        # interval): an idle publisher's passes are up to max_idle_interval apart, so a count of passes would
        # stretch it to hours.
        cleanup_at = loop.time() + self._cleanup_interval
        while True:
            started = loop.time()
            self._wake.clear()  # a notify() from here on, during the pass too, brings the next pass forward
            failed = False
            try:
                n = await self.publish_once()
                if started >= cleanup_at:
                    cleanup_at = started + self._cleanup_interval
                    await self.cleanup()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox publisher cycle failed")
                n, failed = 0, True
            if started >= refresh_at:
                refresh_at = started + metrics.REFRESH_SECONDS
                try:  # a gauge that can't be read must not slow publishing down
                    await self.refresh_backlog()
                except Exception:
                    log.exception("outbox backlog gauges not refreshed")
            cap = self._max_retry if failed or self._left else self._max_idle
            delay = self._poll if n else min(delay * 2, cap)
            if n < self._batch:
                await self._idle(self._wake, delay)
                if self._wake.is_set():
                    delay = self._poll
                # Events that came in during a pass, or right after one, join the next pass instead of each
                # starting their own. (A full batch means a backlog: the next pass starts at once.)
                if (rest := started + self._poll - loop.time()) > 0:
                    await asyncio.sleep(rest)
