"""payment schema: payments, payment_attempts, refunds, provider_events, outbox.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from infra.migrate import SCHEMAS
from infra.outbox import create_outbox_table_v1

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = SCHEMAS["payment"]
STATUSES = (
    "PENDING",
    "REQUIRES_ACTION",
    "AUTHORIZED",
    "CAPTURING",
    "CAPTURED",
    "PARTIALLY_REFUNDED",
    "REFUNDED",
    "VOIDING",
    "VOIDED",
    "DECLINED",
    "FAILED",
    "CASH_ON_DELIVERY",
)


def upgrade() -> None:
    status_list = ", ".join(f"'{s}'" for s in STATUSES)
    op.create_table(
        "payments",
        sa.Column("payment_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("idempotency_key", sa.Text, nullable=False),
        sa.Column("order_ref", sa.Text, nullable=False),
        sa.Column("order_id", sa.Text),
        sa.Column("customer_id", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency_code", sa.Text, nullable=False),
        sa.Column("captured_minor", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("refunded_minor", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("provider_payment_id", sa.Text),
        sa.Column("payment_method", sa.Text, nullable=False),
        sa.Column("return_url", sa.Text, nullable=False, server_default=""),
        sa.Column("next_action_url", sa.Text),
        sa.Column("failure_code", sa.Text),
        sa.Column("failure_message", sa.Text),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("idempotency_key", name="payments_idempotency_key_key"),
        sa.CheckConstraint(f"status IN ({status_list})", name="payments_status_valid"),
        sa.CheckConstraint("amount_minor > 0", name="payments_amount_positive"),
        sa.CheckConstraint("currency_code ~ '^[A-Z]{3}$'", name="payments_currency_iso"),
        sa.CheckConstraint(
            "captured_minor >= 0 AND captured_minor <= amount_minor", name="payments_captured_le_amount"
        ),
        sa.CheckConstraint(
            "refunded_minor >= 0 AND refunded_minor <= captured_minor", name="payments_refunded_le_captured"
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "payments_one_capture_per_order",
        "payments",
        ["order_id"],
        unique=True,
        schema=SCHEMA,
        postgresql_where=sa.text("status IN ('CAPTURING', 'CAPTURED', 'PARTIALLY_REFUNDED', 'REFUNDED')"),
    )
    op.create_index(
        "payments_provider_payment_id",
        "payments",
        ["provider", "provider_payment_id"],
        unique=True,
        schema=SCHEMA,
        postgresql_where=sa.text("provider_payment_id IS NOT NULL"),
    )
    op.create_index("payments_order_ref", "payments", ["order_ref"], schema=SCHEMA)

    op.create_table(
        "payment_attempts",
        sa.Column("attempt_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("payment_id", UUID(as_uuid=True), sa.ForeignKey(f"{SCHEMA}.payments.payment_id"), nullable=False),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("request", JSONB, nullable=False),
        sa.Column("response", JSONB, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_index("payment_attempts_payment", "payment_attempts", ["payment_id", "at"], schema=SCHEMA)

    op.create_table(
        "refunds",
        sa.Column("refund_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("payment_id", UUID(as_uuid=True), sa.ForeignKey(f"{SCHEMA}.payments.payment_id"), nullable=False),
        sa.Column("idempotency_key", sa.Text, nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="PENDING"),
        sa.Column("provider_refund_id", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("idempotency_key", name="refunds_idempotency_key_key"),
        sa.CheckConstraint("amount_minor > 0", name="refunds_amount_positive"),
        sa.CheckConstraint("status IN ('PENDING', 'SUCCEEDED', 'FAILED')", name="refunds_status_valid"),
        schema=SCHEMA,
    )

    op.create_table(
        "provider_events",
        sa.Column("provider", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("payment_id", UUID(as_uuid=True)),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=SCHEMA,
    )

    create_outbox_table_v1(op, SCHEMA)


def downgrade() -> None:
    for table in ("outbox", "provider_events", "refunds", "payment_attempts", "payments"):
        op.drop_table(table, schema=SCHEMA)
