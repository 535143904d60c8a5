"""The hand-written migrations create exactly what tables.py declares."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from infra.config import Settings
from payment.data.tables import SCHEMA, metadata

pytestmark = pytest.mark.integration


def test_migrated_schema_matches_the_tables(settings: Settings) -> None:
    engine = sa.create_engine(str(settings.database_url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "include_schemas": True,
                    "include_name": lambda name, type_, parent: type_ != "schema" or name == SCHEMA,
                    "version_table_schema": SCHEMA,
                },
            )
            diff = [d for d in compare_metadata(context, metadata) if "alembic_version" not in repr(d)]
            version = conn.execute(sa.text(f"SELECT version_num FROM {SCHEMA}.alembic_version")).scalar_one()
    finally:
        engine.dispose()
    assert diff == []
    assert version == "0005"
