"""payment schema: partial indexes for the sweeper (payments left PENDING, CAPTURING or VOIDING; pending refunds).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-20
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from infra.migrate import SCHEMAS

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = SCHEMAS["payment"]


def upgrade() -> None:
    op.create_index(
        "payments_unsettled",
        "payments",
        ["updated_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("status IN ('PENDING', 'CAPTURING', 'VOIDING')"),
    )
    op.create_index(
        "refunds_pending", "refunds", ["created_at"], schema=SCHEMA, postgresql_where=sa.text("status = 'PENDING'")
    )


def downgrade() -> None:
    op.drop_index("refunds_pending", "refunds", schema=SCHEMA)
    op.drop_index("payments_unsettled", "payments", schema=SCHEMA)
