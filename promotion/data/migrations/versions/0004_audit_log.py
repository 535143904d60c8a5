"""The audit log of admin actions (CreatePromotion), append-only (infra.audit).

Revision ID: promotion_0004
Revises: promotion_0003
Create Date: 2026-12-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from infra.audit import create_audit_log_table_v1, drop_audit_log_table_v1
from infra.migrate import SCHEMAS

revision: str = "promotion_0004"
down_revision: str | None = "promotion_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = SCHEMAS["promotion"]


def upgrade() -> None:
    create_audit_log_table_v1(op, SCHEMA)


def downgrade() -> None:
    drop_audit_log_table_v1(op, SCHEMA)
