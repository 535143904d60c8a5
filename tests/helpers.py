"""Small helpers for tests (import as `from helpers import ...`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import sqlalchemy as sa
from nats.js.errors import NotFoundError
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.localstack import LocalStack, StackEndpoints, free_ports, nats_server_binary
from infra.consumer import Event
from infra.db import create_engine, single_statements
from infra.grpc_errors import error_info

# Kassa's own Python packages: the shared kernel, the runtime, the developer stack, the gateway and the seven
# services (the image copies each; source scans read each).
KASSA_PACKAGES = (
    "kernel",
    "infra",
    "devstack",
    "gateway",
    "checkout",
    "order",
    "payment",
    "warehouse",
    "pricing",
    "promotion",
    "notification",
)


@contextlib.asynccontextmanager
async def engine_for_tests(database_url: str | None, name: str, *, pool_size: int = 2) -> AsyncIterator[AsyncEngine]:
    """An engine of the tests' own on ``database_url`` (``application_name`` kassa-<name>-tests), disposed after."""
    assert database_url
    engine = create_engine(str(database_url), pool_size=pool_size, application_name=f"kassa-{name}-tests")
    try:
        yield engine
    finally:
        await engine.dispose()


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def unique(prefix: str) -> str:
    """Ids unique per test, so tests sharing a database never see each other's rows."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def private_stack() -> Iterator[StackEndpoints]:
    """Real Postgres, Redis and NATS on free loopback ports, in a temporary directory removed afterwards."""
    pg_port, redis_port, nats_port = free_ports(3)
    # Not under pytest's own temp folder: pytest resets that folder to 0700 whenever another pytest
    # process starts, which would lock out the unprivileged user Postgres runs as under root.
    data_dir = Path(tempfile.mkdtemp(prefix="kassa-test-stack-"))
    local = LocalStack(data_dir, pg_port=pg_port, redis_port=redis_port, nats_port=nats_port, log=lambda *_: None)
    try:
        yield local.start()
    finally:
        local.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def external_stack() -> StackEndpoints | None:
    """Servers named by KASSA_TEST_{DATABASE,REDIS,NATS}_URL, when all three are set."""
    urls = [os.environ.get(f"KASSA_TEST_{n}_URL") for n in ("DATABASE", "REDIS", "NATS")]
    if not all(urls):
        return None
    db, redis, nats = urls
    return StackEndpoints(database_url=str(db), redis_url=str(redis), nats_url=str(nats))


@contextlib.contextmanager
def scratch_database(database_url: str) -> Iterator[str]:
    """A database of its own on the server of ``database_url``, dropped afterwards: for migrations that go up
    and down, or work over every row, without touching the database other tests share."""
    url = sa.engine.make_url(database_url)
    name = f"kassa_scratch_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass(frozen=True)
class Trips:
    """What a stretch of work cost on one engine, in round trips to Postgres.

    ``autocommit`` counts the statements (of ``statements``) sent on an autocommit connection: no
    BEGIN before them and no COMMIT/ROLLBACK after. ``transactions`` counts the BEGINs sent and
    ``commits`` the COMMITs; each transaction costs those two round trips besides its statements.
    """

    statements: int = 0
    autocommit: int = 0
    transactions: int = 0
    commits: int = 0


class RoundTrips:
    """Counts what an engine sends, with SQLAlchemy's engine events, until :meth:`take` zeroes it.

    ``sent`` holds each statement since the last ``take`` with its parameters, for tests that check
    what was written as well as how often.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.sent: list[tuple[str, Any]] = []
        self._autocommit = self._transactions = self._commits = 0
        engines = [engine.sync_engine]
        single = single_statements(engine).sync_engine
        if single.pool is not engine.sync_engine.pool:  # infra.db.create_engine's autocommit pool of its own
            engines.append(single)
        for each in engines:
            sa.event.listen(each, "before_cursor_execute", self._on_statement)
            sa.event.listen(each, "begin", self._on_begin)
            sa.event.listen(each, "commit", self._on_commit)

    def take(self) -> Trips:
        trips = Trips(len(self.sent), self._autocommit, self._transactions, self._commits)
        self.sent = []
        self._autocommit = self._transactions = self._commits = 0
        return trips

    def _on_statement(self, conn: sa.Connection, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        self.sent.append((statement, parameters))
        self._autocommit += _autocommit(conn)

    def _on_begin(self, conn: sa.Connection) -> None:
        # SQLAlchemy "begins" an autocommit connection too, but the driver sends no BEGIN for it.
        self._transactions += not _autocommit(conn)

    def _on_commit(self, conn: sa.Connection) -> None:
        self._commits += not _autocommit(conn)


def _autocommit(conn: sa.Connection) -> bool:
    return bool(conn.connection.dbapi_connection.autocommit)  # type: ignore[union-attr]


def order_event(ref: str, event_type: str = "OrderCancelled", event_id: str | None = None) -> Event:
    """An order service event for checkout session ``ref``, as a consumer of KASSA_ORDER receives it."""
    order_id = unique("order")
    data = {"order_id": order_id, "checkout_session_id": ref, "status": "CANCELLED", "lines": []}
    return Event(event_id or str(uuid.uuid4()), event_type, order_id, data)


async def drained(js: Any, durable: str, stream: str = "KASSA_ORDER") -> bool:
    """Every message delivered to the durable and acked (False before the service first subscribed)."""
    try:
        info = await js.consumer_info(stream, durable)
    except NotFoundError:
        return False
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)


async def grpc_outcome(call: Awaitable[Any]) -> str:
    """``OK``, or ``CODE:REASON`` of the gRPC error the call ended with."""
    try:
        await call
    except grpc.aio.AioRpcError as err:
        info = error_info(err)
        return f"{err.code().name}:{info.reason if info is not None else '-'}"
    return "OK"


@contextlib.contextmanager
def private_nats() -> Iterator[Any]:
    """A NATS server of this test's own (fsync on every write, like the local stack), restartable on its port."""
    (port,) = free_ports(1)
    store = Path(tempfile.mkdtemp(prefix="kassa-test-nats-"))
    conf = store / "nats-server.conf"
    conf.write_text(f'listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: "{store}"\n  sync_interval: always\n}}\n')

    class Server:
        url = f"nats://127.0.0.1:{port}"
        proc: subprocess.Popen[bytes] | None = None

        def start(self) -> None:
            self.proc = subprocess.Popen([str(nats_server_binary()), "-c", str(conf)], stderr=subprocess.DEVNULL)

        def kill(self) -> None:
            if self.proc is not None:
                self.proc.kill()
                self.proc.wait()
                self.proc = None

    server = Server()
    server.start()
    try:
        yield server
    finally:
        server.kill()
        shutil.rmtree(store, ignore_errors=True)


# asyncio's module functions as they were when the tests started (see ``patched_asyncio``).
_ASYNCIO_FUNCTIONS = {
    name: getattr(asyncio, name)
    for name in ("sleep", "wait", "wait_for", "timeout", "gather", "shield", "create_task", "get_running_loop")
}


def patched_asyncio() -> list[str]:
    """asyncio's functions that something replaced on the module itself.

    Every test shares one session event loop, so a patch there reaches every task on it, servers that other
    tests' fixtures keep running among them: a ``sleep`` that returns at once made a uvicorn server's loop spin
    for good. Inject the function into the code under test instead.
    """
    return [name for name, function in _ASYNCIO_FUNCTIONS.items() if getattr(asyncio, name) is not function]
