"""Replaying dead letters: what a message was about beyond its kind (the event's cause, a refund's amount, the
payment outcome a confirmation reports), so it can be rendered again; and the audit log of admin actions
(ReplayDeadLetter), append-only (infra.audit).

Revision ID: notification_0003
Revises: notification_0002
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from infra.audit import create_audit_log_table_v1, drop_audit_log_table_v1
from infra.migrate import SCHEMAS

revision: str = "notification_0003"
down_revision: str | Sequence[str] | None = "notification_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = SCHEMAS["notification"]


def upgrade() -> None:
    op.add_column("messages", sa.Column("cause", sa.Text, nullable=False, server_default=""), schema=SCHEMA)
    op.add_column("messages", sa.Column("amount_currency", sa.Text), schema=SCHEMA)
    op.add_column("messages", sa.Column("amount_minor", sa.BigInteger), schema=SCHEMA)
    op.add_column("messages", sa.Column("payment_outcome", sa.Text, nullable=False, server_default=""), schema=SCHEMA)
    create_audit_log_table_v1(op, SCHEMA)


def downgrade() -> None:
    drop_audit_log_table_v1(op, SCHEMA)
    op.drop_column("messages", "payment_outcome", schema=SCHEMA)
    op.drop_column("messages", "amount_minor", schema=SCHEMA)
    op.drop_column("messages", "amount_currency", schema=SCHEMA)
    op.drop_column("messages", "cause", schema=SCHEMA)
