"""Async SQLAlchemy engine per service (psycopg 3), created by bootstrap.

Repositories use SQLAlchemy Core with one short transaction per step and
conditional ``UPDATE … RETURNING`` instead of read-modify-write.

No ``pool_pre_ping``: it costs a round trip on every transaction (~60 per checkout). A connection
that Postgres dropped fails its one call instead; SQLAlchemy then invalidates the whole pool, and the
server interceptor answers that call UNAVAILABLE, which every client in the mesh retries. (Each of the two
pools below finds out by its own first failed call: after a restart of Postgres, up to two such calls.)

Two pools per engine: :func:`create_engine` returns the engine of transactions and builds beside it the engine
of :func:`single_statements`, whose connections are autocommit from the moment they open (an engine created
with ``isolation_level="AUTOCOMMIT"``). Autocommit set per use on the transactions' pool instead
(``execution_options``) would cost two greenlet-awaited psycopg calls on every checkout from the pool and two
more on every return (set autocommit and isolation level, then reset both); ``skip_autocommit_rollback``
also drops the ROLLBACK at the end of each use, which psycopg answers without a round trip. A one-statement
``read()`` went from 20 greenlet switches to 10. Disposing the engine of transactions disposes its companion
too (``engine_disposed``), so ``await engine.dispose()`` at shutdown closes every connection of both.

Pool size: each of the two pools keeps up to ``KASSA_DB_POOL_SIZE`` connections open and opens none beyond
(no ``max_overflow``), so one replica of a service holds at most 2 * ``KASSA_DB_POOL_SIZE`` connections
(default 10: 20), as it did with one pool of that size plus as many again under a burst. The trade: each kind
of work now peaks at ``KASSA_DB_POOL_SIZE`` connections where one kind could take all 2 * before (a burst of
reads beyond it waits for a connection, up to the pool's 30 s timeout, within the call's deadline); raise
``KASSA_DB_POOL_SIZE`` if a service's calls wait on its pool. In return transactions and single statements
never wait for each other, and no connection is opened for one use and closed after it (what a pool's
overflow does whenever the load runs above its size: a connect costs the client and Postgres far more than
the use). Postgres must allow the sum over every replica of every service sharing
it, plus migrations and operators: 6 services * 2 replicas * 20 = 240 against the default
``max_connections`` of 100 needs either a smaller pool or a pooler in front.

PgBouncer in transaction mode: Kassa keeps no session state between transactions. Every advisory lock is
``pg_advisory_xact_lock`` (released at commit), no ``SET`` without ``LOCAL``, no ``LISTEN``/``NOTIFY``, no
temporary tables, no server-side cursors held across transactions; isolation levels are the client's own
settings, sent with each ``BEGIN``, and ``single_statements``' connections are autocommit on the client (no
``BEGIN`` at all). What remains is psycopg's server-side prepared statements (a statement run
``prepare_threshold`` = 5 times on one connection is prepared there): with ``pgbouncer=True``
(``KASSA_PGBOUNCER=1``) they are off on both pools, since a later transaction may run on another server
connection that never saw the ``PREPARE``. PgBouncer 1.21+ with ``max_prepared_statements`` > 0 tracks them
itself and needs no ``KASSA_PGBOUNCER``.

``hide_parameters``: a statement that fails is logged with its SQL but without its bound values, which
are what customers sent (emails, addresses) and would otherwise land in tracebacks and logs.

:class:`UnitOfWork` is every service's unit of work (``<service>/data/repositories.py``'s ``SqlUnitOfWork`` is
a thin subclass naming its ``SqlTx``): the one place a service's transaction begins.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from infra.tracing import instrument_engine

__all__ = ["UnitOfWork", "create_engine", "single_statements"]

TxT = TypeVar("TxT")


def create_engine(
    url: str, *, pool_size: int = 10, application_name: str = "kassa", pgbouncer: bool = False
) -> AsyncEngine:
    """The engine of transactions, with its autocommit companion for :func:`single_statements` (see above):
    the same database, settings and tracing, a pool of its own, disposed with it.

    ``pool_size`` is the replica's ``KASSA_DB_POOL_SIZE``: each pool's size, neither with an overflow.
    ``pgbouncer``: no server-side prepared statements, for a PgBouncer in transaction mode (see above)."""
    connect_args: dict[str, object] = {"application_name": application_name}
    if pgbouncer:
        connect_args["prepare_threshold"] = None
    engine = _engine(url, pool_size, connect_args)
    single = _engine(url, pool_size, connect_args, isolation_level="AUTOCOMMIT", skip_autocommit_rollback=True)
    _single[engine.sync_engine] = single

    def dispose_single(_engine: object) -> None:
        # Inside AsyncEngine.dispose's greenlet, so the companion's pool closes its connections too. This also
        # runs for dispose(close=False) (after a fork), which Kassa never calls: there it would close connections
        # the parent still uses, so such a caller must dispose the companion itself instead.
        single.sync_engine.dispose()

    event.listen(engine.sync_engine, "engine_disposed", dispose_single)
    return engine


def _engine(url: str, pool_size: int, connect_args: dict[str, object], **options: object) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_recycle=1800,
        hide_parameters=True,
        connect_args=connect_args,
        **options,
    )
    instrument_engine(engine)  # a span per statement inside a trace, nothing outside one (infra.tracing)
    return engine


_single: weakref.WeakKeyDictionary[Engine, AsyncEngine] = weakref.WeakKeyDictionary()


def single_statements(engine: AsyncEngine) -> AsyncEngine:
    """The autocommit engine of ``engine``, for work that is one statement each.

    No BEGIN and no COMMIT/ROLLBACK round trip, and the same answer: under READ COMMITTED every
    statement sees its own snapshot anyway, and a single statement is atomic on its own. A write may
    use it only when it needs nothing else in its transaction (no outbox event, no second statement
    that must commit with it); several statements on such a connection each commit by themselves.

    For an engine :func:`create_engine` built, its companion pool, whose connections stay autocommit for
    their whole life; for any other, the same pool switched to autocommit for each use.
    """
    single = _single.get(engine.sync_engine)
    if single is not None:
        return single
    return engine.execution_options(isolation_level="AUTOCOMMIT")


class UnitOfWork(Generic[TxT]):
    """Where a use case gets its Tx (``make_tx`` builds one on a connection): ``transaction()`` for a step that
    writes, ``read()`` for reads of one statement each, ``single()`` for a write of exactly one statement.

    A Tx that writes outbox events counts them in ``events`` (:class:`infra.outbox.OutboxTx` does); a Tx
    without that attribute adds none. ``on_commit`` (the outbox publisher's ``notify``) is called after a
    transaction that added events has committed. :meth:`after_commit` is a subclass's hook for what must
    follow every committed write (payment counts its outcomes there).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        make_tx: Callable[[AsyncConnection], TxT],
        *,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._single = single_statements(engine)
        self._make_tx = make_tx
        self._on_commit = on_commit

    def _tx(self, conn: AsyncConnection) -> TxT:
        """The Tx of one connection (a test may override it to wrap the repositories)."""
        return self._make_tx(conn)

    def after_commit(self, tx: TxT) -> None:
        """Called after ``transaction()`` committed and after ``single()``'s statement; nothing by default."""

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[TxT]:
        """BEGIN; commits when the block exits cleanly and rolls back on an exception."""
        async with self._engine.begin() as conn:
            tx = self._tx(conn)
            yield tx
        self.after_commit(tx)
        if _events(tx) and self._on_commit is not None:
            self._on_commit()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[TxT]:
        """No BEGIN/ROLLBACK round trips; each statement is its own snapshot, as under READ COMMITTED."""
        async with self._single.connect() as conn:
            tx = self._tx(conn)
            yield tx
        assert not _events(tx), "an event must commit with its change: use the unit of work's transaction"

    @contextlib.asynccontextmanager
    async def single(self) -> AsyncIterator[TxT]:
        """One write of one statement, committed by itself (autocommit): no BEGIN/COMMIT round trips. The
        connection of ``read()``, and no event either; ``after_commit`` follows the statement."""
        async with self.read() as tx:
            yield tx
        self.after_commit(tx)


def _events(tx: object) -> int:
    """How many outbox events ``tx`` added (0 for a Tx that writes none)."""
    events: int = getattr(tx, "events", 0)
    return events
