"""Checkout's initial schema: carts, cart items, checkout sessions, failed compensations, outbox.

Revision ID: 0001
Revises:
Create Date: 2026-03-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from infra.outbox import create_outbox_table_v1

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "checkout"
NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "carts",
        sa.Column("cart_id", UUID(as_uuid=False), primary_key=True),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="ACTIVE"),
        sa.Column("currency_code", sa.String(3), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("status in ('ACTIVE','CHECKOUT','CONVERTED')", name="carts_status_valid"),
        sa.CheckConstraint("currency_code ~ '^[A-Z]{3}$'", name="carts_currency_valid"),
        schema=SCHEMA,
    )
    op.create_index("carts_customer_idx", "carts", ["customer_id"], schema=SCHEMA)

    op.create_table(
        "cart_items",
        sa.Column(
            "cart_id",
            UUID(as_uuid=False),
            sa.ForeignKey(f"{SCHEMA}.carts.cart_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("sku", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger, nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("quantity > 0", name="cart_items_quantity_positive"),
        sa.CheckConstraint("unit_price_minor >= 0", name="cart_items_price_non_negative"),
        schema=SCHEMA,
    )

    op.create_table(
        "checkout_sessions",
        sa.Column("session_id", UUID(as_uuid=False), primary_key=True),
        sa.Column("cart_id", UUID(as_uuid=False), sa.ForeignKey(f"{SCHEMA}.carts.cart_id"), nullable=False),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="OPEN"),
        sa.Column("currency_code", sa.String(3), nullable=False),
        sa.Column("email", sa.Text, nullable=False, server_default=""),
        sa.Column("shipping_address", JSONB),
        sa.Column("billing_address", JSONB),
        sa.Column("shipping_method", sa.Text, nullable=False, server_default=""),
        sa.Column("payment_method", sa.Text, nullable=False, server_default=""),
        sa.Column("promotion_codes", ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("notes", sa.Text, nullable=False, server_default=""),
        sa.Column("lines", JSONB, nullable=False),
        sa.Column("preview", JSONB),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("saga_step", sa.Text),
        sa.Column("saga_state", JSONB, nullable=False, server_default="{}"),
        sa.Column("result", JSONB),
        sa.Column("confirm_started_at", sa.DateTime(timezone=True)),
        sa.Column("order_id", sa.Text, nullable=False, server_default=""),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint(
            "status in ('OPEN','CONFIRMING','COMPLETED','EXPIRED','CANCELLED')", name="checkout_sessions_status_valid"
        ),
        sa.CheckConstraint(
            "idempotency_key is null or length(idempotency_key) between 1 and 255",
            name="checkout_sessions_idempotency_key_length",
        ),
        sa.CheckConstraint("cardinality(promotion_codes) <= 5", name="checkout_sessions_promotion_codes_max"),
        sa.CheckConstraint("length(notes) <= 500", name="checkout_sessions_notes_max"),
        schema=SCHEMA,
    )
    op.create_index(
        "checkout_sessions_one_live_per_cart",
        "checkout_sessions",
        ["cart_id"],
        unique=True,
        schema=SCHEMA,
        postgresql_where=sa.text("status in ('OPEN','CONFIRMING')"),
    )
    op.create_index(
        "checkout_sessions_idempotency_key_uq",
        "checkout_sessions",
        ["customer_id", "idempotency_key"],
        unique=True,
        schema=SCHEMA,
        postgresql_where=sa.text("idempotency_key is not null"),
    )
    op.create_index(
        "checkout_sessions_open_expiry_idx",
        "checkout_sessions",
        ["expires_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'OPEN'"),
    )
    op.create_index(
        "checkout_sessions_confirming_idx",
        "checkout_sessions",
        ["confirm_started_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'CONFIRMING'"),
    )

    op.create_table(
        "failed_compensations",
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column("session_id", UUID(as_uuid=False), nullable=False),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("status in ('pending','done','dead')", name="failed_compensations_status_valid"),
        sa.CheckConstraint(
            "operation in ('void_authorization','release_reservations','release_promotion','confirm_reservations',"
            "'confirm_promotion','capture_payment','record_payment','cart_cleanup')",
            name="failed_compensations_operation_valid",
        ),
        sa.CheckConstraint("attempts >= 0", name="failed_compensations_attempts_non_negative"),
        schema=SCHEMA,
    )
    op.create_index(
        "failed_compensations_due_idx",
        "failed_compensations",
        ["next_attempt_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("failed_compensations_session_idx", "failed_compensations", ["session_id"], schema=SCHEMA)

    create_outbox_table_v1(op, SCHEMA)


def downgrade() -> None:
    for table in ("outbox", "failed_compensations", "checkout_sessions", "cart_items", "carts"):
        op.drop_table(table, schema=SCHEMA)
