"""Async SQLAlchemy engine per service (psycopg 3), created by bootstrap.

Repositories use SQLAlchemy Core with one short transaction per step and
conditional ``UPDATE … RETURNING`` instead of read-modify-write.

No ``pool_pre_ping``: it costs a round trip on every transaction (~60 per checkout). A connection
that Postgres dropped fails its one call instead; SQLAlchemy then invalidates the whole pool, and the
server interceptor answers that call UNAVAILABLE, which every client in the mesh retries.

``hide_parameters``: a statement that fails is logged with its SQL but without its bound values, which
are what customers sent (emails, addresses) and would otherwise land in tracebacks and logs.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["create_engine"]


def create_engine(url: str, *, pool_size: int = 10, application_name: str = "kassa") -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        hide_parameters=True,
        connect_args={"application_name": application_name},
    )


def single_statements(engine: AsyncEngine) -> AsyncEngine:
    """The same pool in autocommit, for work that is one statement each.

    No BEGIN and no COMMIT/ROLLBACK round trip, and the same answer: under READ COMMITTED every
    statement sees its own snapshot anyway, and a single statement is atomic on its own. A write may
    use it only when it needs nothing else in its transaction (no outbox event, no second statement
    that must commit with it); several statements on such a connection each commit by themselves.
    """
    return engine.execution_options(isolation_level="AUTOCOMMIT")
