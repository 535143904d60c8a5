"""Reservations may be RESTOCKED (a cancelled order's sold units back on hand); an inbox for consumed events.

Revision ID: 0002
Revises: 0001
Create Date: 2025-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from infra.outbox import create_inbox_table_v1

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "warehouse"


def upgrade() -> None:
    op.drop_constraint("reservations_status_valid", "reservations", schema=SCHEMA, type_="check")
    op.create_check_constraint(
        "reservations_status_valid",
        "reservations",
        "status IN ('active', 'confirmed', 'released', 'expired', 'restocked')",
        schema=SCHEMA,
    )
    create_inbox_table_v1(op, SCHEMA)


def downgrade() -> None:
    op.drop_table("inbox", schema=SCHEMA)
    op.drop_constraint("reservations_status_valid", "reservations", schema=SCHEMA, type_="check")
    op.create_check_constraint(
        "reservations_status_valid",
        "reservations",
        "status IN ('active', 'confirmed', 'released', 'expired')",
        schema=SCHEMA,
    )
