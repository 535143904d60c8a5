"""An outbox row written by the statement that makes its change: the INSERT as a data-modifying CTE.

:func:`infra.outbox.add_event` is a statement of its own, so a change with an event costs a transaction
(BEGIN, the change, the INSERT, COMMIT: four round trips). Here the INSERT rides in the change's own
statement, ``WITH change AS (UPDATE … RETURNING …), event AS (INSERT INTO outbox SELECT … FROM change)``,
and one statement commits both or neither on an autocommit connection (one round trip). The row is the
one ``add_event`` writes (the same envelope, :func:`infra.outbox.envelope`, subject, ``created_at =
clock_timestamp()``); it is written once for each row of ``source`` that passes ``where`` (pass a source of at
most one row for one event), so no change, no event.

The statement is built once (at import) with bind parameters named after ``prefix``; each call binds
:meth:`OutboxCte.params`. The event's ``data`` is either known before the statement (a Python dict,
bound as JSON) or computed by it from the changed rows (a ``jsonb`` SQL expression over ``source``).

A statement that writes an event only if another of its CTEs (the guarded change) returned a row passes
``where=returned_a_row(that_cte)``.

:class:`StatementUnitOfWork` adds ``statement()`` to :class:`infra.db.UnitOfWork`: an autocommit
connection whose Tx may write events this way, and only this way (``add_event`` is refused before it writes); the
publisher is woken after it as after a transaction, even if the block raised after its statement committed.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.sql.selectable import CTE

from infra import audit
from infra.db import UnitOfWork
from infra.events import subject as make_subject
from infra.outbox import OutboxTx, envelope

__all__ = ["OutboxCte", "StatementUnitOfWork", "envelope", "json_object", "returned_a_row"]

TxT = TypeVar("TxT")


def json_object(fields: Mapping[str, sa.ColumnElement[Any]]) -> sa.ColumnElement[Any]:
    """``jsonb_build_object('k1', v1, …)``, for an event's ``data`` built by SQL from the changed row; the keys
    are written into the SQL (they are the code's own names, never a caller's), the values are expressions."""
    args: list[sa.ColumnElement[Any]] = []
    for key, value in fields.items():
        if not key.isidentifier():
            raise ValueError(f"json_object: {key!r} is not a plain name")
        args += [sa.literal_column(f"'{key}'"), value]
    return sa.func.jsonb_build_object(*args, type_=JSONB)


def returned_a_row(cte: CTE) -> sa.Exists:
    """True once ``cte`` (a guarded change: the session really finished, the stock row really changed) returned a row:
    an :class:`OutboxCte`'s ``where`` for an event written only then."""
    return sa.exists(sa.select(sa.literal(1)).select_from(cte))


class OutboxCte:
    """``INSERT INTO outbox … SELECT … FROM source WHERE where RETURNING event_id`` as the CTE ``name``.

    ``data``: a ``jsonb`` expression over ``source`` for the event's data, or None to bind it in
    :meth:`params`. ``aggregate_id``: a text expression over ``source`` (the column and the envelope's
    ``aggregate_id``), or None to bind it. Add :attr:`cte` to
    the change's statement (``stmt.add_cte(outbox.cte)``); Postgres runs a data-modifying CTE whether or
    not the statement reads it.
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

        def bind(key: str, type_: Any) -> sa.BindParameter[Any]:
            return sa.bindparam(f"{prefix}_{key}", type_=type_)

        payload: sa.ColumnElement[Any] = sa.cast(bind("envelope", JSONB), JSONB)
        if aggregate_id is not None:
            payload = payload.op("||")(sa.func.jsonb_build_object("aggregate_id", aggregate_id))
        if data is not None:
            payload = payload.op("||")(sa.func.jsonb_build_object("data", data))
        columns: list[sa.ColumnElement[Any]] = [
            sa.cast(bind("event_id", PgUUID(as_uuid=True)), PgUUID(as_uuid=True)),
            bind("subject", sa.Text),
            bind("event_type", sa.Text),
            aggregate_id if aggregate_id is not None else bind("aggregate_id", sa.Text),
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
        return _event_params(
            self.prefix,
            service=service,
            event_type=event_type,
            aggregate_id=aggregate_id,
            data=data,
            event_id=event_id,
            with_aggregate=self._bind_aggregate,
        )


def _event_params(
    prefix: str,
    *,
    service: str,
    event_type: str,
    aggregate_id: str,
    data: Mapping[str, Any] | None,
    event_id: uuid.UUID | None = None,
    with_aggregate: bool,
) -> dict[str, Any]:
    eid, payload = envelope(event_type, aggregate_id, data, event_id)
    params: dict[str, Any] = {
        f"{prefix}_event_id": eid,
        f"{prefix}_subject": make_subject(service, event_type),
        f"{prefix}_event_type": event_type,
        f"{prefix}_envelope": payload,
    }
    if with_aggregate:
        params[f"{prefix}_aggregate_id"] = aggregate_id
    return params


class StatementUnitOfWork(UnitOfWork[TxT]):
    """:class:`infra.db.UnitOfWork` plus ``statement()``: one write of one statement that may carry its outbox
    rows (an :class:`OutboxCte`), committed by itself in autocommit. The Tx counts those rows in ``events``
    (``OutboxTx.count_written``); the publisher is woken after the statement if it wrote any. Only for a step that
    is one write statement: anything else it sends commits on its own (reads are fine). An event of a statement of
    its own (``add_event``) is refused before it is written: ``statement()`` marks an :class:`infra.outbox.OutboxTx`
    ``statement_only``, and its ``add_event`` raises RuntimeError (in autocommit the row would commit, and be
    published, whether or not its change did).

    ``after_commit`` and the publisher's wake-up follow the block even when it raises: on the autocommit
    connection every statement that returned has committed, and what the Tx recorded (its ``events``, payment's
    outcomes) is recorded only after its statement returned, so it is exactly what committed. (A statement that
    failed committed nothing and recorded nothing.)

    An admin's call (``infra.audit.pending_action()``) gets a transaction instead, so the audit entry the
    data layer writes commits with the change, as it must (``infra.audit``); its Tx is marked ``statement_only``
    too, so a step behaves the same for every caller, and an exception rolls it back (no ``after_commit``, no
    wake-up: nothing committed)."""

    @contextlib.asynccontextmanager
    async def statement(self) -> AsyncIterator[TxT]:
        if audit.pending_action() is not None:
            async with self.transaction() as audited:
                _statement_only(audited)
                yield audited
            return
        tx: TxT | None = None
        try:
            async with self._single.connect() as conn:
                tx = self._tx(conn)
                _statement_only(tx)
                yield tx
        finally:
            if tx is not None:
                self.after_commit(tx)
                if getattr(tx, "events", 0) and self._on_commit is not None:
                    self._on_commit()


def _statement_only(tx: object) -> None:
    """Refuse ``add_event`` on ``tx`` (an :class:`infra.outbox.OutboxTx`; a Tx without an outbox writes no event)."""
    if isinstance(tx, OutboxTx):
        tx.statement_only = True
