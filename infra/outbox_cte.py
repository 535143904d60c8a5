"""Outbox rows written by the statement that makes the change: an ``INSERT INTO outbox`` as a CTE of it.

:func:`infra.outbox.add_event` writes an event as a statement of its own in the change's transaction, which
costs a round trip per event plus the transaction's BEGIN and COMMIT. When the change itself is one statement
(an ``UPDATE … RETURNING`` in a ``WITH``), its events can ride along: :func:`event_insert` builds the outbox
INSERT that writes the event only when a guard CTE of that statement returned a row (the session really was
finished, the cart really moved), so a change that matched nothing writes no event either — as a rolled-back
transaction would have. The row is the one :func:`~infra.outbox.add_event` writes: the same envelope (with the
writer's traceparent), subject and ``clock_timestamp()`` ordering.

A unit of work runs such a statement with :meth:`infra.db.UnitOfWork.statement`: autocommit (a single statement
is atomic on its own), counting the events so the publisher is woken after it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.selectable import CTE

from infra.events import subject as make_subject
from infra.tracing import current_traceparent

__all__ = ["envelope", "event_insert"]


def envelope(event_id: uuid.UUID, event_type: str, aggregate_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """The payload :func:`infra.outbox.add_event` stores: the event and the writer's trace."""
    doc: dict[str, Any] = {
        "event_id": str(event_id),
        "event_type": event_type,
        "aggregate_id": aggregate_id,
        "occurred_at": datetime.now(UTC).isoformat(),
        "data": data,
    }
    if (parent := current_traceparent()) is not None:
        doc["traceparent"] = parent
    return doc


def event_insert(
    table: sa.Table,
    when: CTE,
    *,
    service: str,
    event_type: str,
    aggregate_id: str,
    data: dict[str, Any],
    name: str,
) -> CTE:
    """A CTE named ``name`` that writes one outbox event if the CTE ``when`` returned at least one row.

    Add it to the statement with ``.add_cte(...)`` (Postgres runs a data-modifying CTE whether or not the
    statement reads it; SQLAlchemy renders only the CTEs it is given or that are referenced).
    """
    eid = uuid.uuid4()
    row = sa.select(
        sa.literal(eid, table.c.event_id.type),
        sa.literal(make_subject(service, event_type), sa.Text),
        sa.literal(event_type, sa.Text),
        sa.literal(aggregate_id, sa.Text),
        sa.literal(envelope(eid, event_type, aggregate_id, data), table.c.payload.type),
        sa.func.clock_timestamp(),
    ).where(sa.exists(sa.select(sa.literal(1)).select_from(when)))
    insert = table.insert().from_select(
        ["event_id", "subject", "event_type", "aggregate_id", "payload", "created_at"], row
    )
    return insert.returning(table.c.event_id).cte(name)
