"""Usages may be RETURNED (a cancelled order's use given back); an inbox for consumed events.

Revision ID: promotion_0002
Revises: promotion_0001
Create Date: 2025-12-01
"""

from collections.abc import Sequence

from alembic import op

from infra.migrate import SCHEMAS
from infra.outbox import create_inbox_table_v1

revision: str = "promotion_0002"
down_revision: str | Sequence[str] | None = "promotion_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = SCHEMAS["promotion"]


def upgrade() -> None:
    op.drop_constraint("promotion_usages_status_valid", "promotion_usages", schema=SCHEMA, type_="check")
    op.create_check_constraint(
        "promotion_usages_status_valid",
        "promotion_usages",
        "status in ('reserved','confirmed','released','returned')",
        schema=SCHEMA,
    )
    create_inbox_table_v1(op, SCHEMA)


def downgrade() -> None:
    op.drop_table("inbox", schema=SCHEMA)
    op.drop_constraint("promotion_usages_status_valid", "promotion_usages", schema=SCHEMA, type_="check")
    op.create_check_constraint(
        "promotion_usages_status_valid",
        "promotion_usages",
        "status in ('reserved','confirmed','released')",
        schema=SCHEMA,
    )
