"""The audit log of admin actions (UpdateFulfillment, CancelOrder by an admin, and any other RPC an admin
calls), append-only (infra.audit).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from infra.audit import create_audit_log_table_v1, drop_audit_log_table_v1
from infra.migrate import SCHEMAS

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = SCHEMAS["order"]


def upgrade() -> None:
    create_audit_log_table_v1(op, SCHEMA)


def downgrade() -> None:
    drop_audit_log_table_v1(op, SCHEMA)
