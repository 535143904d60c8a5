"""The sandbox's ledger on disk: a small SQLite file, so intents, refunds, idempotent answers and
undelivered webhooks survive a restart, as they do at a real processor.

Plain stdlib ``sqlite3``: every write is a few rows from one request, made under the app's lock,
in autocommit-per-call transactions (WAL, ``synchronous=NORMAL``: no fsync per commit), which is far below
what would need a thread. The path
``:memory:`` keeps everything in memory (tests that do not restart the sandbox).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["MEMORY", "Ledger"]

MEMORY = ":memory:"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS intents (id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refunds (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS webhooks (
    event_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending'  -- pending, delivered, failed (gave up)
);
"""


class Ledger:
    def __init__(self, path: str | Path) -> None:
        if str(path) != MEMORY:
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if self.path != MEMORY:
            self._db.execute("PRAGMA journal_mode=WAL")
            # A commit reaches the WAL file (the OS's cache) but is not fsynced: it survives the sandbox's own
            # crash or restart, as the tests and a processor's ledger need, and only a power loss of the machine
            # could take the last ones. FULL fsynced every request's commit: ~9 ms with the event loop blocked
            # and ~0.3 ms of CPU each, on the reference machine, against ~0.6 ms and ~0.1 ms.
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- reads (at start) ----------------------------------------------------------------------------

    def intents(self) -> Iterator[tuple[int, dict[str, Any]]]:
        for seq, body in self._db.execute("SELECT seq, body FROM intents ORDER BY seq"):
            yield seq, json.loads(body)

    def refunds(self) -> Iterator[dict[str, Any]]:
        for (body,) in self._db.execute("SELECT body FROM refunds"):
            yield json.loads(body)

    def responses(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for key, body in self._db.execute("SELECT key, body FROM responses"):
            yield key, json.loads(body)

    def pending_webhooks(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT body FROM webhooks WHERE status = 'pending' ORDER BY seq")
        return [json.loads(body) for (body,) in rows]

    def webhook_status(self, event_id: str) -> str | None:
        row = self._db.execute("SELECT status FROM webhooks WHERE event_id = ?", (event_id,)).fetchone()
        return None if row is None else str(row[0])

    # -- writes ----------------------------------------------------------------------------------

    def save(
        self,
        intents: list[tuple[int, dict[str, Any]]],
        refunds: list[dict[str, Any]],
        responses: list[tuple[str, dict[str, Any]]],
        webhooks: list[dict[str, Any]],
    ) -> None:
        """One request's changes, in one transaction."""
        with self._transaction():
            self._db.executemany(
                "INSERT INTO intents (id, seq, body) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                [(body["id"], seq, json.dumps(body)) for seq, body in intents],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO refunds (id, body) VALUES (?, ?)",
                [(body["id"], json.dumps(body)) for body in refunds],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO responses (key, body) VALUES (?, ?)",
                [(key, json.dumps(body)) for key, body in responses],
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO webhooks (event_id, seq, body) "
                "VALUES (?, (SELECT coalesce(max(seq), 0) + 1 FROM webhooks), ?)",
                [(event["id"], json.dumps(event)) for event in webhooks],
            )

    def mark_webhook(self, event_id: str, status: str) -> None:
        self._db.execute("UPDATE webhooks SET status = ? WHERE event_id = ?", (status, event_id))

    def _transaction(self) -> Any:
        db = self._db

        class _Tx:
            def __enter__(self) -> None:
                db.execute("BEGIN")

            def __exit__(self, exc_type: object, *_: object) -> None:
                db.execute("ROLLBACK" if exc_type else "COMMIT")

        return _Tx()
