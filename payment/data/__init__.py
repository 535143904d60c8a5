"""Postgres side of the payment service: tables, the repositories and unit of work, Alembic migrations."""
