"""The payment schema (SQLAlchemy Core).

Mirrored by migrations/versions/ (0001 initial, 0002 inbox, 0003 sweeper indexes, 0004 audit log).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

from infra.audit import audit_log_table
from infra.migrate import SCHEMAS
from infra.outbox import inbox_table, outbox_table

__all__ = [
    "CAPTURE_HOLDING_SQL",
    "SCHEMA",
    "STATUSES",
    "UNSETTLED_SQL",
    "attempts",
    "audit_log",
    "inbox",
    "metadata",
    "outbox",
    "payments",
    "provider_events",
    "refunds",
]

SCHEMA = SCHEMAS["payment"]
metadata = sa.MetaData(schema=SCHEMA)

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
_STATUS_LIST = ", ".join(f"'{s}'" for s in STATUSES)
# Money of an order is (being) taken: at most one such payment per order (DESIGN.md §4 invariant 2).
CAPTURE_HOLDING_SQL = "status IN ('CAPTURING', 'CAPTURED', 'PARTIALLY_REFUNDED', 'REFUNDED')"
# Statuses a payment passes through on its way to a settled one: what the sweeper looks for when one stays.
UNSETTLED_SQL = "status IN ('PENDING', 'CAPTURING', 'VOIDING')"

payments = sa.Table(
    "payments",
    metadata,
    sa.Column("payment_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("idempotency_key", sa.Text, nullable=False, unique=True),
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
    sa.CheckConstraint(f"status IN ({_STATUS_LIST})", name="payments_status_valid"),
    sa.CheckConstraint("amount_minor > 0", name="payments_amount_positive"),
    sa.CheckConstraint("currency_code ~ '^[A-Z]{3}$'", name="payments_currency_iso"),
    sa.CheckConstraint("captured_minor >= 0 AND captured_minor <= amount_minor", name="payments_captured_le_amount"),
    sa.CheckConstraint(
        "refunded_minor >= 0 AND refunded_minor <= captured_minor", name="payments_refunded_le_captured"
    ),
    sa.Index("payments_one_capture_per_order", "order_id", unique=True, postgresql_where=sa.text(CAPTURE_HOLDING_SQL)),
    sa.Index(
        "payments_provider_payment_id",
        "provider",
        "provider_payment_id",
        unique=True,
        postgresql_where=sa.text("provider_payment_id IS NOT NULL"),
    ),
    sa.Index("payments_order_ref", "order_ref"),
    sa.Index("payments_created_idx", "created_at"),
    sa.Index("payments_unsettled", "updated_at", postgresql_where=sa.text(UNSETTLED_SQL)),
)

attempts = sa.Table(
    "payment_attempts",
    metadata,
    sa.Column("attempt_id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("payment_id", UUID(as_uuid=True), sa.ForeignKey("payments.payment_id"), nullable=False),
    sa.Column("operation", sa.Text, nullable=False),
    sa.Column("request", JSONB, nullable=False),
    sa.Column("response", JSONB, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("payment_attempts_payment", "payment_id", "at"),
)

refunds = sa.Table(
    "refunds",
    metadata,
    sa.Column("refund_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("payment_id", UUID(as_uuid=True), sa.ForeignKey("payments.payment_id"), nullable=False),
    sa.Column("idempotency_key", sa.Text, nullable=False, unique=True),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="PENDING"),
    sa.Column("provider_refund_id", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("amount_minor > 0", name="refunds_amount_positive"),
    sa.CheckConstraint("status IN ('PENDING', 'SUCCEEDED', 'FAILED')", name="refunds_status_valid"),
    sa.Index("refunds_pending", "created_at", postgresql_where=sa.text("status = 'PENDING'")),
)

provider_events = sa.Table(
    "provider_events",
    metadata,
    sa.Column("provider", sa.Text, primary_key=True),
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("payment_id", UUID(as_uuid=True)),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

outbox = outbox_table(metadata)
# Order events payment consumed (cancellations, failed payments): a redelivery has no second effect.
inbox = inbox_table(metadata)

# Admin actions (RefundPayment by an admin, and any other RPC an admin calls): append-only, see infra.audit.
audit_log = audit_log_table(metadata)
