"""An outbox row written by the statement that makes its change: the INSERT as a data-modifying CTE.

:func:`infra.outbox.add_event` is a statement of its own, so a change with an event costs a transaction
(BEGIN, the change, the INSERT, COMMIT: four round trips). Here the INSERT rides in the change's own
statement, ``WITH change AS (UPDATE … RETURNING …), event AS (INSERT INTO outbox SELECT … FROM change)``,
and one statement commits both or neither on an autocommit connection (one round trip). The row is the
one ``add_event`` writes (same envelope, subject, ``created_at = clock_timestamp()``); it is written once
for each row of ``source`` that passes ``where`` (pass a source of at most one row for one event), so no
change, no event.

The statement is built once (at import) with bind parameters named after ``prefix``; each call binds
:meth:`OutboxCte.params`. The event's ``data`` is either known before the statement (a Python dict,
bound as JSON) or computed by it from the changed rows (a ``jsonb`` SQL expression over ``source``).

:class:`StatementUnitOfWork` adds ``statement()`` to :class:`infra.db.UnitOfWork`: an autocommit
connection whose Tx may write events this way; the publisher is woken after it as after a transaction.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PgUUID

from infra import audit
from infra.db import UnitOfWork
from infra.events import subject as make_subject
from infra.tracing import current_traceparent

__all__ = ["OutboxCte", "StatementUnitOfWork", "envelope"]

TxT = TypeVar("TxT")


def envelope(
    event_type: str, aggregate_id: str, data: Mapping[str, Any] | None, event_id: uuid.UUID | None = None
) -> tuple[uuid.UUID, dict[str, Any]]:
    """The event id and the payload :func:`infra.outbox.add_event` stores (``data`` None: left for SQL)."""
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


class OutboxCte:
    """``INSERT INTO outbox … SELECT … FROM source WHERE where RETURNING event_id`` as the CTE ``name``.

    ``data``: a ``jsonb`` expression over ``source`` for the event's data, or None to bind it in
    :meth:`params`. ``aggregate_id``: a text expression over ``source`` (the column and the envelope's
    ``aggregate_id``), or None to bind it. Add :attr:`cte` to
    the change's statement (``stmt.add_cte(outbox.cte)``); Postgres runs a data-modifying CTE whether or
    not the statement reads it. :attr:`written` is a scalar subquery: how many rows this CTE wrote.
    """

    def __init__(
        self,
        table: sa.Table,
        *,
        source: sa.FromClause | None = None,
        where: sa.ColumnElement[bool] | None = None,
        data: sa.ColumnElement[Any] | None = None,
        aggregate_id: sa.ColumnElement[Any] | None = None,
        prefix: str = "ob",
        name: str = "outbox_row",
    ) -> None:
        self.prefix = prefix
        self._bind_data = data is None
        self._bind_aggregate = aggregate_id is None
        payload: sa.ColumnElement[Any] = sa.cast(sa.bindparam(f"{prefix}_envelope", type_=JSONB), JSONB)
        if aggregate_id is not None:
            payload = payload.op("||")(sa.func.jsonb_build_object("aggregate_id", aggregate_id))
        if data is not None:
            payload = payload.op("||")(sa.func.jsonb_build_object("data", data))
        columns: list[sa.ColumnElement[Any]] = [
            sa.cast(sa.bindparam(f"{prefix}_event_id", type_=PgUUID(as_uuid=True)), PgUUID(as_uuid=True)),
            sa.bindparam(f"{prefix}_subject", type_=sa.Text),
            sa.bindparam(f"{prefix}_event_type", type_=sa.Text),
            aggregate_id if aggregate_id is not None else sa.bindparam(f"{prefix}_aggregate_id", type_=sa.Text),
            payload,
            sa.func.clock_timestamp(),
        ]
        select = sa.select(*columns)
        if source is not None:
            select = select.select_from(source)
        if where is not None:
            select = select.where(where)
        insert = table.insert().from_select(
            ["event_id", "subject", "event_type", "aggregate_id", "payload", "created_at"], select
        )
        self.cte = insert.returning(table.c.event_id).cte(name)
        self.written = sa.select(sa.func.count()).select_from(self.cte).scalar_subquery()

    def params(
        self,
        *,
        service: str,
        event_type: str,
        aggregate_id: str,
        data: Mapping[str, Any] | None = None,
        event_id: uuid.UUID | None = None,
    ) -> dict[str, Any]:
        """The bind parameters of one event. ``aggregate_id`` goes into the envelope and the column, unless the CTE
        computes it (then the statement's value replaces it in both: pass "" if not known); ``data`` is required
        exactly when the CTE does not compute it."""
        if self._bind_data != (data is not None):
            raise ValueError("data must be given exactly when the statement does not compute it")
        eid, payload = envelope(event_type, aggregate_id, data, event_id)
        p = self.prefix
        params: dict[str, Any] = {
            f"{p}_event_id": eid,
            f"{p}_subject": make_subject(service, event_type),
            f"{p}_event_type": event_type,
            f"{p}_envelope": payload,
        }
        if self._bind_aggregate:
            params[f"{p}_aggregate_id"] = aggregate_id
        return params


class StatementUnitOfWork(UnitOfWork[TxT]):
    """:class:`infra.db.UnitOfWork` plus ``statement()``: one write of one statement that may carry its outbox
    rows (an :class:`OutboxCte`), committed by itself in autocommit. The Tx counts those rows in ``events``
    as ``add_event`` does; the publisher is woken after the statement if it wrote any. Only for a step that
    is one write statement: anything else it sends commits on its own (reads are fine).

    An admin's call (``infra.audit.pending_action()``) gets a transaction instead, so the audit entry the
    data layer writes commits with the change, as it must (``infra.audit``)."""

    @contextlib.asynccontextmanager
    async def statement(self) -> AsyncIterator[TxT]:
        if audit.pending_action() is not None:
            async with self.transaction() as tx:
                yield tx
            return
        async with self._single.connect() as conn:
            tx = self._tx(conn)
            yield tx
        self.after_commit(tx)
        if getattr(tx, "events", 0) and self._on_commit is not None:
            self._on_commit()
