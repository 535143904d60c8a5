"""The saga's fence: checkout_sessions.saga_attempt, bumped by every claim of a session's saga and
required by every write of its progress.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "checkout"


def upgrade() -> None:
    # A constant default: no table rewrite, no long lock on a busy table.
    op.add_column(
        "checkout_sessions",
        sa.Column("saga_attempt", sa.BigInteger, nullable=False, server_default="0"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_column("checkout_sessions", "saga_attempt", schema=SCHEMA)
