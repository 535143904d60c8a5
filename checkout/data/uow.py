"""The SQL unit of work: one short transaction holding every repository and the outbox."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from checkout.data.repositories import (
    SqlCartRepo,
    SqlCompensationRepo,
    SqlConfirmRecordRepo,
    SqlFunnelRepo,
    SqlSessionRepo,
)
from checkout.data.tables import outbox
from infra.db import single_statements
from infra.outbox import add_event
from infra.pii import PiiCipher

__all__ = ["SqlTx", "SqlUnitOfWork"]


class SqlTx:
    def __init__(self, conn: AsyncConnection, cipher: PiiCipher) -> None:
        self.conn = conn
        self.carts = SqlCartRepo(conn)
        self.sessions = SqlSessionRepo(conn, cipher)
        self.compensations = SqlCompensationRepo(conn)
        self.confirm_records = SqlConfirmRecordRepo(conn)
        self.funnel = SqlFunnelRepo(conn)
        self.events = 0

    async def add_event(self, event_type: str, aggregate_id: str, data: dict[str, Any]) -> None:
        await add_event(
            self.conn, outbox, service="checkout", event_type=event_type, aggregate_id=aggregate_id, data=data
        )
        self.events += 1


class SqlUnitOfWork:
    """Commits when the block exits cleanly; ``on_events`` wakes the outbox publisher after a commit with events.
    ``cipher`` encrypts and decrypts the personal data the sessions keep."""

    def __init__(self, engine: AsyncEngine, cipher: PiiCipher, on_events: Callable[[], None] | None = None) -> None:
        self._engine = engine
        self._cipher = cipher
        self._reads = single_statements(engine)
        self._on_events = on_events

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[SqlTx]:
        async with self._engine.begin() as conn:
            tx = SqlTx(conn, self._cipher)
            yield tx
        if tx.events and self._on_events is not None:
            self._on_events()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[SqlTx]:
        """No BEGIN/ROLLBACK round trips; each statement is its own snapshot, as under READ COMMITTED."""
        async with self._reads.connect() as conn:
            yield SqlTx(conn, self._cipher)

    @contextlib.asynccontextmanager
    async def single(self) -> AsyncIterator[SqlTx]:
        """One write of one statement, committed by itself (autocommit): no BEGIN/COMMIT round trips."""
        async with self._reads.connect() as conn:
            tx = SqlTx(conn, self._cipher)
            yield tx
        assert not tx.events, "an event must commit with its change: use the unit of work's transaction"
