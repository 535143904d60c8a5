"""payment schema: inbox (order events consumed: cancellations and failed payments).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

from infra.migrate import SCHEMAS
from infra.outbox import create_inbox_table_v1

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = SCHEMAS["payment"]


def upgrade() -> None:
    create_inbox_table_v1(op, SCHEMA)


def downgrade() -> None:
    op.drop_table("inbox", schema=SCHEMA)
