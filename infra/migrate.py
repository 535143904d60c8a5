"""Alembic migrations, one history per service schema (each service owns its schema).

Each service keeps ``<service>/data/migrations/`` with an ``env.py`` that calls
:func:`run_env` and its own ``versions/``; the version table lives in the
service's schema. ``kassa migrate`` upgrades them all to head, each on its own database when
``KASSA_<SERVICE>_DATABASE_URL`` gives it one (``urls``), else on ``KASSA_DATABASE_URL``.

A data migration that encrypts personal data asks :func:`pii_cipher` for its keys: the cipher
``migrate`` was given, else ``KASSA_PII_KEYS`` from the environment (development mode falls back to the
development key; production refuses to go on without a real one). It asks only when a row needs it,
so a fresh database migrates without keys.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config

from infra.config import Settings
from infra.pii import PiiCipher

__all__ = ["SCHEMAS", "SERVICES", "alembic_config", "migrate", "pii_cipher", "run_env"]

# Upgrade order does not matter (no cross-schema references); this is the boot order.
SERVICES = ["warehouse", "pricing", "promotion", "payment", "order", "checkout", "notification"]
SCHEMAS = {
    "warehouse": "warehouse",
    "pricing": "pricing",
    "promotion": "promotion",
    "payment": "payment",
    "order": "orders",  # "order" is an SQL keyword
    "checkout": "checkout",
    "notification": "notification",
}


def alembic_config(service: str, database_url: str, *, pii: PiiCipher | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", f"{service}.data:migrations")
    cfg.attributes["database_url"] = database_url
    cfg.attributes["schema"] = SCHEMAS[service]
    if pii is not None:
        cfg.attributes["pii"] = pii
    return cfg


def migrate(
    database_url: str | None,
    services: list[str] | None = None,
    revision: str = "head",
    *,
    pii: PiiCipher | None = None,
    urls: Mapping[str, str] | None = None,
) -> None:
    """Upgrade each service's schema on ``urls[service]`` (its own database), or else on ``database_url``."""
    for service in services or SERVICES:
        url = (urls or {}).get(service) or database_url
        if not url:
            raise ValueError(
                f"no database for {service}: set KASSA_DATABASE_URL or KASSA_{service.upper()}_DATABASE_URL"
            )
        command.upgrade(alembic_config(service, url, pii=pii), revision)


def pii_cipher() -> PiiCipher:
    """The keys a running data migration encrypts and decrypts personal data with (see the module docstring)."""
    cfg = context.config
    cipher = cfg.attributes.get("pii")
    if cipher is None:
        cipher = cfg.attributes["pii"] = Settings.from_env().pii_cipher()
    assert isinstance(cipher, PiiCipher)
    return cipher


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
