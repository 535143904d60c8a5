"""Transactional outbox: events written with the state change, published later.

A service adds ``outbox_table(metadata)`` to its schema and calls
:func:`add_event` inside the same transaction as the change. The
:class:`OutboxPublisher` worker claims pending rows with ``FOR UPDATE SKIP
LOCKED`` under a lease (rows stuck in ``processing`` past the lease are
reclaimed, so a crashed replica loses nothing), publishes them to JetStream with
``Nats-Msg-Id`` = event id, marks a row sent only after JetStream acknowledged
it, and deletes sent rows after a retention period. Safe with several replicas.

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
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.schema import SchemaItem

from infra.events import subject as make_subject

if TYPE_CHECKING:
    from alembic.operations import Operations

__all__ = [
    "OutboxPublisher",
    "add_event",
    "claim_inbox",
    "create_inbox_table_v1",
    "create_outbox_table_v1",
    "inbox_table",
    "outbox_table",
]

log = logging.getLogger("kassa.outbox")


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


def create_outbox_table_v1(op: Operations, schema: str) -> None:
    """For a service's initial migration: CREATE TABLE outbox (version 1) and its index, in ``schema``."""
    op.create_table("outbox", *_outbox_v1(), schema=schema)


def create_inbox_table_v1(op: Operations, schema: str) -> None:
    """For a consuming service's initial migration: CREATE TABLE inbox (version 1), in ``schema``."""
    op.create_table("inbox", *_inbox_v1(), schema=schema)


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
    eid = event_id or uuid.uuid4()
    envelope = {
        "event_id": str(eid),
        "event_type": event_type,
        "aggregate_id": aggregate_id,
        "occurred_at": datetime.now(UTC).isoformat(),
        "data": data,
    }
    await conn.execute(
        table.insert().values(
            event_id=eid,
            subject=make_subject(service, event_type),
            event_type=event_type,
            aggregate_id=aggregate_id,
            payload=envelope,
        )
    )
    return eid


async def claim_inbox(conn: AsyncConnection, table: sa.Table, consumer: str, event_id: str) -> bool:
    """True the first time (consumer, event_id) is seen in this transaction's commit; False for a redelivery."""
    stmt = (
        insert(table).values(consumer=consumer, event_id=event_id).on_conflict_do_nothing().returning(table.c.event_id)
    )
    return (await conn.execute(stmt)).first() is not None


class OutboxPublisher:
    def __init__(
        self,
        engine: AsyncEngine,
        table: sa.Table,
        js: Any,
        *,
        batch_size: int = 100,
        lease_seconds: int = 60,
        poll_interval: float = 0.2,
        max_idle_interval: float = 1.0,
        retention_hours: int = 72,
    ) -> None:
        self._engine = engine
        self._t = table
        self._js = js
        self._batch = batch_size
        self._lease = lease_seconds
        self._poll = poll_interval
        self._max_idle = max(max_idle_interval, poll_interval)
        self._retention = retention_hours
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """Hint that rows were just committed, so the worker needn't wait for its next poll."""
        self._wake.set()

    async def claim(self) -> list[sa.Row[Any]]:
        t = self._t
        due = (
            sa.select(t.c.event_id)
            .where(
                sa.or_(
                    t.c.status == "pending",
                    sa.and_(t.c.status == "processing", t.c.lease_until < sa.func.now()),
                )
            )
            .order_by(t.c.created_at)
            .limit(self._batch)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        stmt = (
            t.update()
            .where(t.c.event_id.in_(due))
            .values(
                status="processing",
                attempts=t.c.attempts + 1,
                lease_until=sa.func.now() + sa.text(f"interval '{int(self._lease)} seconds'"),
            )
            .returning(t.c.event_id, t.c.subject, t.c.payload, t.c.created_at)
        )
        async with self._engine.begin() as conn:
            rows = list((await conn.execute(stmt)).all())
        rows.sort(key=lambda r: r.created_at)
        return rows

    async def publish_once(self) -> int:
        """Claim and publish one batch; returns how many rows were sent."""
        rows = await self.claim()
        if not rows:
            return 0
        sent: list[uuid.UUID] = []
        failed: dict[uuid.UUID, str] = {}
        for row in rows:
            try:
                await self._js.publish(
                    row.subject,
                    json.dumps(row.payload).encode(),
                    headers={"Nats-Msg-Id": str(row.event_id)},
                    timeout=5,
                )
                sent.append(row.event_id)
            except Exception as exc:
                failed[row.event_id] = repr(exc)[:500]
        async with self._engine.begin() as conn:
            if sent:
                await conn.execute(
                    self._t.update()
                    .where(self._t.c.event_id.in_(sent))
                    .values(status="sent", sent_at=sa.func.now(), lease_until=None)
                )
            for eid, err in failed.items():
                await conn.execute(
                    self._t.update()
                    .where(self._t.c.event_id == eid)
                    .values(status="pending", lease_until=None, last_error=err)
                )
        if failed:
            log.warning("outbox: %d events failed to publish, will retry", len(failed))
        return len(sent)

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

        While events keep coming it polls every ``poll_interval``; each empty cycle doubles the wait,
        up to ``max_idle_interval``, so an idle service costs the database little. ``notify()`` and
        any cycle that finds work bring it straight back to the short poll.
        """
        cycles = 0
        delay = self._poll
        while True:
            try:
                n = await self.publish_once()
                cycles += 1
                if cycles % 3000 == 0:
                    await self.cleanup()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox publisher cycle failed")
                n = 0
            delay = self._poll if n else min(delay * 2, self._max_idle)
            if n < self._batch:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
                if self._wake.is_set():
                    delay = self._poll
