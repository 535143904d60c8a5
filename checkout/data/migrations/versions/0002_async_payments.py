"""Asynchronous payments and replayable confirmations: AWAITING_PAYMENT sessions, confirm_requests,
and the refund_payment compensation.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "checkout"
NOW = sa.text("now()")
_OPERATIONS = (
    "'void_authorization','release_reservations','release_promotion','confirm_reservations',"
    "'confirm_promotion','capture_payment','record_payment','cart_cleanup'"
)


def upgrade() -> None:
    op.drop_constraint("checkout_sessions_status_valid", "checkout_sessions", schema=SCHEMA)
    op.create_check_constraint(
        "checkout_sessions_status_valid",
        "checkout_sessions",
        "status in ('OPEN','CONFIRMING','COMPLETED','EXPIRED','CANCELLED','AWAITING_PAYMENT')",
        schema=SCHEMA,
    )
    op.create_index(
        "checkout_sessions_awaiting_payment_idx",
        "checkout_sessions",
        ["updated_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'AWAITING_PAYMENT'"),
    )
    op.drop_constraint("failed_compensations_operation_valid", "failed_compensations", schema=SCHEMA)
    op.create_check_constraint(
        "failed_compensations_operation_valid",
        "failed_compensations",
        f"operation in ({_OPERATIONS},'refund_payment')",
        schema=SCHEMA,
    )
    op.create_table(
        "confirm_requests",
        sa.Column("customer_id", sa.Text, primary_key=True),
        sa.Column("idempotency_key", sa.Text, primary_key=True),
        sa.Column("session_id", UUID(as_uuid=False), nullable=False),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("response", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        schema=SCHEMA,
    )
    op.create_index("confirm_requests_created_idx", "confirm_requests", ["created_at"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("confirm_requests", schema=SCHEMA)
    op.drop_constraint("failed_compensations_operation_valid", "failed_compensations", schema=SCHEMA)
    op.create_check_constraint(
        "failed_compensations_operation_valid", "failed_compensations", f"operation in ({_OPERATIONS})", schema=SCHEMA
    )
    op.drop_index("checkout_sessions_awaiting_payment_idx", "checkout_sessions", schema=SCHEMA)
    op.drop_constraint("checkout_sessions_status_valid", "checkout_sessions", schema=SCHEMA)
    op.create_check_constraint(
        "checkout_sessions_status_valid",
        "checkout_sessions",
        "status in ('OPEN','CONFIRMING','COMPLETED','EXPIRED','CANCELLED')",
        schema=SCHEMA,
    )
