"""An outbox row written by the statement that makes the change it announces (a data-modifying CTE).

:func:`infra.outbox.add_event` is a statement of its own, so a change and its event need a transaction
(BEGIN, the change, the INSERT, COMMIT: four round trips). Here the INSERT is a CTE of the change's
statement: ``INSERT INTO outbox SELECT … FROM <the change's CTE>``, one row per row the change returned,
none when it applied to nothing. One statement is atomic on its own, so the event commits exactly with the
change, in autocommit or inside a transaction.

The envelope is the one :func:`infra.outbox.add_event` writes (event id, type, aggregate id, occurred_at,
the writer's ``traceparent``), bound as parameters; its ``data`` is a SQL expression over the changed row, so
the payload describes the row as the statement left it, not as the caller last read it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from infra.events import subject
from infra.tracing import current_traceparent

__all__ = ["OUTBOX_COLUMNS", "envelope_params", "json_object", "outbox_rows"]

OUTBOX_COLUMNS = ["event_id", "subject", "event_type", "aggregate_id", "payload", "created_at"]


def json_object(fields: Mapping[str, sa.ColumnElement[Any]]) -> sa.ColumnElement[Any]:
    """``jsonb_build_object('k1', v1, …)``; the keys are written into the SQL (they are the code's own names)."""
    args: list[sa.ColumnElement[Any]] = []
    for key, value in fields.items():
        if not key.isidentifier():
            raise ValueError(f"json_object: {key!r} is not a plain name")
        args += [sa.literal_column(f"'{key}'"), value]
    return sa.func.jsonb_build_object(*args, type_=JSONB)


def outbox_rows(source: sa.FromClause, data: sa.ColumnElement[Any], *, prefix: str = "o_") -> sa.Select[Any]:
    """The SELECT that feeds ``outbox.insert().from_select(OUTBOX_COLUMNS, …)``: one row per row of ``source``,
    with the envelope bound (``<prefix>event_id``, ``subject``, ``event_type``, ``aggregate_id``, ``envelope``:
    :func:`envelope_params`) and ``data`` (an expression over ``source``) set as the envelope's ``data``."""
    envelope = sa.bindparam(f"{prefix}envelope", type_=JSONB)
    payload = envelope.op("||", return_type=JSONB)(json_object({"data": data}))
    return sa.select(
        sa.bindparam(f"{prefix}event_id", type_=sa.Uuid),
        sa.bindparam(f"{prefix}subject", type_=sa.Text),
        sa.bindparam(f"{prefix}event_type", type_=sa.Text),
        sa.bindparam(f"{prefix}aggregate_id", type_=sa.Text),
        payload,
        # The time of this statement, as add_event writes it.
        sa.func.clock_timestamp(),
    ).select_from(source)


def envelope_params(service: str, event_type: str, aggregate_id: str, *, prefix: str = "o_") -> dict[str, Any]:
    """The bound half of the row :func:`outbox_rows` writes: what :func:`infra.outbox.add_event` puts in the
    envelope besides ``data``."""
    event_id = uuid.uuid4()
    envelope: dict[str, Any] = {
        "event_id": str(event_id),
        "event_type": event_type,
        "aggregate_id": aggregate_id,
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    if (parent := current_traceparent()) is not None:
        envelope["traceparent"] = parent
    return {
        f"{prefix}event_id": event_id,
        f"{prefix}subject": subject(service, event_type),
        f"{prefix}event_type": event_type,
        f"{prefix}aggregate_id": aggregate_id,
        f"{prefix}envelope": envelope,
    }
