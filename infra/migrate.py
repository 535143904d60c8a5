"""Alembic migrations, one history per service schema (each service owns its schema).

Each service keeps ``<service>/data/migrations/`` with an ``env.py`` that calls
:func:`run_env` and its own ``versions/``; the version table lives in the
service's schema. ``kassa migrate`` upgrades them all to head.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config

__all__ = ["SCHEMAS", "SERVICES", "alembic_config", "migrate", "run_env"]

# Upgrade order does not matter (no cross-schema references); this is the boot order.
SERVICES = ["warehouse", "pricing", "promotion", "payment", "order", "checkout"]
SCHEMAS = {
    "warehouse": "warehouse",
    "pricing": "pricing",
    "promotion": "promotion",
    "payment": "payment",
    "order": "orders",  # "order" is an SQL keyword
    "checkout": "checkout",
}


def alembic_config(service: str, database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", f"{service}.data:migrations")
    cfg.attributes["database_url"] = database_url
    cfg.attributes["schema"] = SCHEMAS[service]
    return cfg


def migrate(database_url: str, services: list[str] | None = None, revision: str = "head") -> None:
    for service in services or SERVICES:
        command.upgrade(alembic_config(service, database_url), revision)


def run_env(target_metadata: sa.MetaData | None = None) -> None:
    """Body of every service's migrations/env.py (online mode only)."""
    cfg = context.config
    schema = cfg.attributes["schema"]
    engine = sa.create_engine(cfg.attributes["database_url"], poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        conn.commit()
        context.configure(
            connection=conn,
            target_metadata=target_metadata,
            version_table_schema=schema,
            include_schemas=True,
        )
        with context.begin_transaction():
            # Several replicas may start at once: one migrates, the others wait.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": f"kassa-migrate-{schema}"})
            context.run_migrations()
    engine.dispose()
