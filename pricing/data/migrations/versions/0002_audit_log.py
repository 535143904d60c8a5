"""The audit log of admin actions (UpsertProducts), append-only (infra.audit).

Revision ID: pricing_0002
Revises: pricing_0001
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from infra.audit import create_audit_log_table_v1, drop_audit_log_table_v1
from infra.migrate import SCHEMAS

revision: str = "pricing_0002"
down_revision: str | None = "pricing_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = SCHEMAS["pricing"]


def upgrade() -> None:
    create_audit_log_table_v1(op, SCHEMA)


def downgrade() -> None:
    drop_audit_log_table_v1(op, SCHEMA)
