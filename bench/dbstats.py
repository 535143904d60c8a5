"""PostgreSQL's own counters over the measured window: transactions and rows per checkout.

Only when the bench may read the database (its own stack, or ``--database-url``). The counters come
from ``pg_stat_database``, which backends flush about once a second, so a window of a few seconds
is exact enough; the outbox publishers and sweepers poll in the background and are counted too.
"""

from __future__ import annotations

from typing import Any

from bench.invariants import sqlalchemy_to_libpq

__all__ = ["COUNTERS", "DbStatsMeter", "db_section"]

COUNTERS = (
    "xact_commit",
    "xact_rollback",
    "tup_returned",
    "tup_fetched",
    "tup_inserted",
    "tup_updated",
    "tup_deleted",
    "blks_read",
    "blks_hit",
    "conflicts",
    "deadlocks",
)


class DbStatsMeter:
    def __init__(self, database_url: str) -> None:
        self._url = sqlalchemy_to_libpq(database_url)
        self._before: dict[str, int] | None = None
        self._after: dict[str, int] | None = None

    def _read(self) -> dict[str, int] | None:
        import psycopg

        try:
            with psycopg.connect(self._url, autocommit=True, connect_timeout=5) as conn:
                row = conn.execute(
                    f"SELECT {', '.join(COUNTERS)} FROM pg_stat_database WHERE datname = current_database()"
                ).fetchone()
        except psycopg.Error:
            return None
        return None if row is None else {name: int(value or 0) for name, value in zip(COUNTERS, row, strict=True)}

    def start(self) -> None:
        self._before = self._read()

    def stop(self) -> None:
        self._after = self._read()

    def delta(self) -> dict[str, int] | None:
        if self._before is None or self._after is None:
            return None
        return {name: self._after[name] - self._before[name] for name in COUNTERS}


def db_section(delta: dict[str, int] | None, checkouts: int) -> dict[str, Any] | None:
    """The counters' growth, and transactions and rows written per completed checkout."""
    if delta is None:
        return None
    transactions = delta["xact_commit"] + delta["xact_rollback"]
    written = delta["tup_inserted"] + delta["tup_updated"] + delta["tup_deleted"]
    return {
        **delta,
        "transactions_per_checkout": round(transactions / checkouts, 1) if checkouts else None,
        "rows_written_per_checkout": round(written / checkouts, 1) if checkouts else None,
    }
