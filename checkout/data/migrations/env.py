"""Alembic environment of the checkout schema (see infra.migrate.run_env)."""

from checkout.data.tables import metadata
from infra.migrate import run_env

run_env(metadata)
