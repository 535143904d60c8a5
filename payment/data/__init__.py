"""Postgres side of the payment service: tables, the repository, Alembic migrations."""
