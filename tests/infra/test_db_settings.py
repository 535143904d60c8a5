"""Database settings for production: a database per service (KASSA_<SERVICE>_DATABASE_URL) and PgBouncer in
transaction mode (KASSA_PGBOUNCER: no session state survives a transaction), against the real Postgres."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import KASSA_PACKAGES, scratch_database

from devstack.localstack import StackEndpoints
from infra.config import DATABASE_SERVICES, ConfigError, Settings
from infra.db import create_engine
from infra.migrate import migrate

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MAIN = "postgresql+psycopg://kassa@main:5432/kassa"
ORDERS = "postgresql+psycopg://orders@orders-db:5432/orders"


def test_a_service_uses_its_own_database_url_and_the_others_the_shared_one() -> None:
    settings = Settings.from_env({"KASSA_DATABASE_URL": MAIN, "KASSA_ORDER_DATABASE_URL": ORDERS})
    assert settings.for_service("order").database_url == ORDERS
    for service in set(DATABASE_SERVICES) - {"order"}:
        assert settings.for_service(service).database_url == MAIN
    assert settings.database_url == MAIN
    only_own = Settings.from_env({"KASSA_ORDER_DATABASE_URL": ORDERS})
    assert only_own.for_service("order").database_url == ORDERS
    assert only_own.for_service("checkout").database_url is None


def test_kassa_pgbouncer_is_a_flag() -> None:
    assert Settings.from_env({}).pgbouncer is False
    assert Settings.from_env({"KASSA_PGBOUNCER": "1"}).pgbouncer is True
    assert Settings.from_env({"KASSA_PGBOUNCER": "false"}).pgbouncer is False
    with pytest.raises(ConfigError, match="KASSA_PGBOUNCER"):
        Settings.from_env({"KASSA_PGBOUNCER": "transaction"})


@pytest.fixture
def own_database(stack: StackEndpoints) -> Iterator[str]:
    """A second database on the test Postgres, standing in for a service's own server."""
    with scratch_database(stack.database_url) as url:
        yield url


def test_migrations_run_on_the_database_a_service_owns(own_database: str) -> None:
    migrate(None, ["pricing"], urls={"pricing": own_database})
    engine = sa.create_engine(own_database, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        schemas = set(conn.scalars(sa.text("SELECT schema_name FROM information_schema.schemata")))
        version = conn.scalar(sa.text("SELECT version_num FROM pricing.alembic_version"))
    engine.dispose()
    assert "pricing" in schemas
    assert "warehouse" not in schemas  # only what was asked, only where it was asked
    assert version
    with pytest.raises(ValueError, match="KASSA_WAREHOUSE_DATABASE_URL"):
        migrate(None, ["warehouse"], urls={"pricing": own_database})


async def _prepared_after_repeats(url: str, *, pgbouncer: bool) -> int:
    engine = create_engine(url, pool_size=1, application_name="kassa-pgbouncer-test", pgbouncer=pgbouncer)
    try:
        async with engine.connect() as conn:
            for i in range(10):  # past psycopg's prepare_threshold (5)
                await conn.execute(sa.text("SELECT CAST(:n AS integer) + 1"), {"n": i})
            return int(await conn.scalar(sa.text("SELECT count(*) FROM pg_prepared_statements")))
    finally:
        await engine.dispose()


async def test_with_kassa_pgbouncer_no_statement_is_prepared_on_the_server(stack: StackEndpoints) -> None:
    """A prepared statement lives on one server connection; PgBouncer in transaction mode may hand the next
    transaction another, where it does not exist. Without the flag psycopg prepares (the test can fail)."""
    assert await _prepared_after_repeats(stack.database_url, pgbouncer=False) > 0
    assert await _prepared_after_repeats(stack.database_url, pgbouncer=True) == 0


# Statements that leave state on the server connection after their transaction ends (SQL here is upper case).
_SESSION_STATE = re.compile(
    r"""pg_(?:try_)?advisory_lock(?:_shared)?\s*\(|\bLISTEN\s+\w|\bNOTIFY\s+\w|pg_notify\s*\(|CREATE\s+TEMP"""
    r"""|SET\s+SESSION\b|["']\s*SET\s+(?!LOCAL\b)\w+\s*(?:=|TO\b)|\bDECLARE\s+\w+\s+(?:\w+\s+)*CURSOR\s+WITH\s+HOLD"""
)


def test_no_code_keeps_session_state_across_transactions() -> None:
    found = []
    for package in KASSA_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if _SESSION_STATE.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "session state a PgBouncer in transaction mode would leak:\n" + "\n".join(found)
    assert _SESSION_STATE.search('sa.text("SET statement_timeout = 5")')  # the pattern finds what it should
    assert not _SESSION_STATE.search("sa.text(\"SET LOCAL lock_timeout = '10s'\")")
    assert _SESSION_STATE.search("SELECT pg_advisory_lock(1)")
    assert not _SESSION_STATE.search("SELECT pg_advisory_xact_lock(1)")
