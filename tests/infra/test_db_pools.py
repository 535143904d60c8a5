"""infra.db's two pools: transactions on one, ``read()``/``single()`` on an autocommit pool of their own.

A connection of the autocommit pool is never switched into autocommit and back (what
``execution_options(isolation_level="AUTOCOMMIT")`` on the transactions' pool did on every use: two
greenlet-awaited psycopg calls out and two back), a transaction still gets BEGIN and COMMIT or ROLLBACK,
PgBouncer mode turns prepared statements off on both pools, and disposing the engine (every service's
shutdown) closes the connections of both. Against the real Postgres.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
import sqlalchemy as sa
from helpers import RoundTrips, Trips, bearer, scratch_database
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from devstack.localstack import StackEndpoints
from infra.config import Settings
from infra.db import UnitOfWork, create_engine, single_statements
from infra.migrate import migrate
from infra.runner import running_service
from kassa.common.v1 import money_pb2
from kassa.pricing.v1 import pricing_service_pb2 as pb
from kassa.pricing.v1 import pricing_service_pb2_grpc
from pricing.bootstrap import bootstrap as pricing_bootstrap

pytestmark = pytest.mark.integration

SELECT_ONE = sa.text("SELECT 1")


class _Switches:
    """Counts the isolation-level changes a dialect makes on its DBAPI connections: ``set`` (at connect on an
    autocommit engine, or on each checkout for a per-use ``execution_options`` level) and ``reset`` (on each
    return after a per-use level). Each is a greenlet-awaited psycopg call (``set_autocommit``) and more."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, engine: AsyncEngine) -> None:
        self.set = self.reset = 0
        dialect = engine.sync_engine.dialect
        set_level, reset_level = dialect.set_isolation_level, dialect.reset_isolation_level

        def counted_set(dbapi_connection: Any, level: Any) -> None:
            self.set += 1
            set_level(dbapi_connection, level)

        def counted_reset(dbapi_connection: Any) -> None:
            self.reset += 1
            reset_level(dbapi_connection)

        monkeypatch.setattr(dialect, "set_isolation_level", counted_set)
        monkeypatch.setattr(dialect, "reset_isolation_level", counted_reset)

    def take(self) -> tuple[int, int]:
        taken = (self.set, self.reset)
        self.set = self.reset = 0
        return taken


def _autocommit(conn: AsyncConnection) -> bool:
    return bool(conn.sync_connection.connection.dbapi_connection.autocommit)  # type: ignore[union-attr]


def _app() -> str:
    return f"kassa-test-pools-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture
async def engine(stack: StackEndpoints) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(stack.database_url, pool_size=2, application_name=_app())
    yield eng
    await eng.dispose()


@pytest.fixture
def scratch(stack: StackEndpoints) -> Iterator[str]:
    with scratch_database(stack.database_url) as url:
        yield url


async def test_read_and_single_connections_are_autocommit_for_their_whole_life(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    single = single_statements(engine)
    assert single is single_statements(engine)  # one companion per engine, not a new pool per call
    assert single.sync_engine.pool is not engine.sync_engine.pool
    uow: UnitOfWork[AsyncConnection] = UnitOfWork(engine, lambda conn: conn)
    switches, transactions = _Switches(monkeypatch, single), _Switches(monkeypatch, engine)
    trips = RoundTrips(engine)
    states: list[bool] = []
    sa.event.listen(single.sync_engine.pool, "checkout", lambda dbapi, *_: states.append(dbapi.autocommit))
    sa.event.listen(single.sync_engine.pool, "checkin", lambda dbapi, *_: states.append(dbapi.autocommit))

    async with uow.read() as conn:  # the pool's first connection: set to autocommit once, as it opens
        await conn.execute(SELECT_ONE)
    assert switches.take() == (1, 0)
    for _ in range(10):
        async with uow.read() as conn:
            await conn.execute(SELECT_ONE)
            assert _autocommit(conn)
        async with uow.single() as conn:
            await conn.execute(SELECT_ONE)
            assert _autocommit(conn)
    assert switches.take() == (0, 0)  # 20 uses, no switch in or out
    assert transactions.take() == (0, 0)  # and the transactions' pool untouched
    assert states and all(states)  # autocommit when handed out and when given back, every time
    assert trips.take() == Trips(statements=21, autocommit=21, transactions=0, commits=0)

    # What the per-use autocommit of the transactions' pool costs (the old single_statements): a switch into
    # autocommit on every checkout, and out of it on every return (a reset, which sets the default level).
    per_use = engine.execution_options(isolation_level="AUTOCOMMIT")
    for _ in range(3):
        async with per_use.connect() as conn:
            await conn.execute(SELECT_ONE)
    assert transactions.take() == (2 * 3, 3)


async def test_a_transaction_still_begins_commits_and_rolls_back_on_an_exception(scratch: str) -> None:
    engine = create_engine(scratch, pool_size=2, application_name=_app())
    try:
        uow: UnitOfWork[AsyncConnection] = UnitOfWork(engine, lambda conn: conn)
        async with uow.single() as conn:
            await conn.execute(sa.text("CREATE TABLE t (n integer)"))
        trips = RoundTrips(engine)
        rollbacks: list[bool] = []
        sa.event.listen(engine.sync_engine, "rollback", lambda conn: rollbacks.append(_autocommit_sync(conn)))

        async with uow.transaction() as conn:
            assert not _autocommit(conn)
            await conn.execute(sa.text("INSERT INTO t VALUES (1)"))
            async with uow.read() as other:  # not visible to another connection before COMMIT
                assert await other.scalar(sa.text("SELECT count(*) FROM t")) == 0
        assert trips.take() == Trips(statements=2, autocommit=1, transactions=1, commits=1)

        with pytest.raises(RuntimeError):
            async with uow.transaction() as conn:
                await conn.execute(sa.text("INSERT INTO t VALUES (2)"))
                raise RuntimeError("the step failed")
        assert rollbacks == [False]  # a real ROLLBACK, on a connection in a transaction
        assert trips.take() == Trips(statements=1, autocommit=0, transactions=1, commits=0)

        async with uow.single() as conn:  # committed by itself: visible elsewhere before the block ends
            await conn.execute(sa.text("INSERT INTO t VALUES (3)"))
            async with engine.connect() as other:
                assert await other.scalar(sa.text("SELECT count(*) FROM t WHERE n = 3")) == 1
        async with uow.read() as conn:
            assert list(await conn.scalars(sa.text("SELECT n FROM t ORDER BY n"))) == [1, 3]
    finally:
        await engine.dispose()


def _autocommit_sync(conn: sa.Connection) -> bool:
    return bool(conn.connection.dbapi_connection.autocommit)  # type: ignore[union-attr]


async def _prepared(engine: AsyncEngine) -> int:
    """Server-side prepared statements on one connection of ``engine`` after a statement ran 10 times."""
    async with engine.connect() as conn:
        for i in range(10):  # past psycopg's prepare_threshold (5)
            await conn.execute(sa.text("SELECT CAST(:n AS integer) + 1"), {"n": i})
        return int(await conn.scalar(sa.text("SELECT count(*) FROM pg_prepared_statements")))


@pytest.mark.parametrize("pgbouncer", [False, True])
async def test_pgbouncer_mode_turns_prepared_statements_off_on_both_pools(
    stack: StackEndpoints, pgbouncer: bool
) -> None:
    engine = create_engine(stack.database_url, pool_size=1, application_name=_app(), pgbouncer=pgbouncer)
    try:
        transactions, single = await _prepared(engine), await _prepared(single_statements(engine))
    finally:
        await engine.dispose()
    if pgbouncer:
        assert (transactions, single) == (0, 0)
    else:  # the control: without the flag psycopg prepares on both (the test can fail)
        assert transactions > 0 and single > 0


@pytest.mark.parametrize("pool_size", [1, 2, 5])
async def test_a_replica_holds_at_most_twice_its_pool_size(stack: StackEndpoints, pool_size: int) -> None:
    """Both pools full at once: 2 * pool_size connections, pool_size of each and no overflow, as infra.db
    documents (a replica's budget is 2 * KASSA_DB_POOL_SIZE)."""
    app = _app()
    engine = create_engine(stack.database_url, pool_size=pool_size, application_name=app)
    single = single_statements(engine)
    pools = [engine.sync_engine.pool, single.sync_engine.pool]
    assert [(p.size(), p._max_overflow) for p in pools] == [(pool_size, 0)] * 2  # type: ignore[attr-defined]
    try:
        held = [await engine.connect() for _ in range(pool_size)] + [await single.connect() for _ in range(pool_size)]
        for conn in held:
            await conn.execute(SELECT_ONE)
        assert await _backends(stack.database_url, app) == 2 * pool_size
        for conn in held:
            await conn.close()
    finally:
        await engine.dispose()


async def test_disposing_the_engine_closes_the_connections_of_both_pools(stack: StackEndpoints) -> None:
    app = _app()
    engine = create_engine(stack.database_url, pool_size=2, application_name=app)
    async with engine.connect() as a, single_statements(engine).connect() as b:
        await a.execute(SELECT_ONE)
        await b.execute(SELECT_ONE)
    assert await _backends(stack.database_url, app) == 2  # one kept in each pool
    await engine.dispose()
    assert await _backends_gone(stack.database_url, app)


async def test_a_service_shutdown_closes_both_pools(settings: Settings, scratch: str, admin_token: str) -> None:
    """Pricing through its own bootstrap and runner, on a database of its own (so the count is its alone):
    an admin's UpsertProducts (a transaction) and GetProducts (a read) leave a connection in each pool;
    the shutdown closes both."""
    migrate(None, ["pricing"], urls={"pricing": scratch})
    own = dataclasses.replace(settings, database_url=scratch)
    sku = f"sku-{uuid.uuid4().hex[:8]}"
    product = pb.Product(
        sku=sku,
        name="Pool",
        weight_grams=1,
        tax_class="standard",
        prices=[money_pb2.Money(currency_code="USD", amount_minor=1)],
    )
    async with running_service(pricing_bootstrap, own, "127.0.0.1:0") as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pricing_service_pb2_grpc.PricingServiceStub(channel)
            await stub.UpsertProducts(pb.UpsertProductsRequest(products=[product]), metadata=bearer(admin_token))
            got = await stub.GetProducts(
                pb.GetProductsRequest(skus=[sku], currency_code="USD"), metadata=bearer(admin_token)
            )
            assert [p.product.sku for p in got.products] == [sku]
        assert await _backends(scratch, "kassa-pricing") >= 2
    assert await _backends_gone(scratch, "kassa-pricing")


async def _backends(url: str, app: str) -> int:
    """Backends of ``app`` on ``url``'s database, counted from a connection of its own (NullPool)."""
    counter = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with counter.connect() as conn:
            return int(
                conn.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = :app"
                        " AND datname = current_database()"
                    ),
                    {"app": app},
                )
            )
    finally:
        counter.dispose()


async def _backends_gone(url: str, app: str) -> bool:
    """A closed connection's backend leaves pg_stat_activity as it exits, just after the client closed it."""
    for _ in range(200):
        if await _backends(url, app) == 0:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_each_pool_recovers_from_connections_postgres_dropped(stack: StackEndpoints) -> None:
    """No pre-ping: after Postgres dropped the connections, each pool's next use fails once (a disconnect,
    which the server interceptor answers UNAVAILABLE), and the use after it gets a fresh connection."""
    app = _app()
    engine = create_engine(stack.database_url, pool_size=2, application_name=app)
    uow: UnitOfWork[AsyncConnection] = UnitOfWork(engine, lambda conn: conn)
    pid = sa.text("SELECT pg_backend_pid()")
    try:
        async with uow.transaction() as conn:
            first_tx = await conn.scalar(pid)
        async with uow.read() as conn:
            first_read = await conn.scalar(pid)
        counter = sa.create_engine(stack.database_url, poolclass=sa.pool.NullPool)
        with counter.connect() as conn:
            killed = conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :app"),
                {"app": app},
            ).all()
        counter.dispose()
        assert len(killed) == 2
        assert await _backends_gone(stack.database_url, app)
        for use in (uow.read, uow.transaction):
            with pytest.raises(sa.exc.OperationalError) as failed:
                async with use() as conn:
                    await conn.scalar(pid)
            assert failed.value.connection_invalidated
        async with uow.transaction() as conn:
            assert await conn.scalar(pid) != first_tx
        async with uow.read() as conn:
            assert await conn.scalar(pid) != first_read
    finally:
        await engine.dispose()
