"""Orders, lines, discounts, status history, outbox and inbox.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from infra.outbox import create_inbox_table_v1, create_outbox_table_v1

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "orders"
STATUSES = (
    "'PENDING_PAYMENT', 'CONFIRMED', 'AWAITING_SHIPMENT', 'PACKED', 'SHIPPED', 'DELIVERED', 'CANCELLED', "
    "'PAYMENT_FAILED'"
)
OUTCOMES = "'CAPTURED', 'CASH_ON_DELIVERY', 'FAILED'"


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("order_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("checkout_session_id", sa.Text, nullable=False),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("email", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("currency_code", sa.String(3), nullable=False),
        sa.Column("subtotal_minor", sa.BigInteger, nullable=False),
        sa.Column("discount_total_minor", sa.BigInteger, nullable=False),
        sa.Column("shipping_total_minor", sa.BigInteger, nullable=False),
        sa.Column("tax_total_minor", sa.BigInteger, nullable=False),
        sa.Column("grand_total_minor", sa.BigInteger, nullable=False),
        sa.Column("shipping_address", JSONB, nullable=False),
        sa.Column("billing_address", JSONB),
        sa.Column("shipping_method", sa.Text, nullable=False),
        sa.Column("payment_id", sa.Text, nullable=False, server_default=""),
        sa.Column("payment_method", sa.Text, nullable=False),
        sa.Column("payment_outcome", sa.Text),
        sa.Column("notes", sa.Text, nullable=False, server_default=""),
        sa.Column("tracking_number", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("checkout_session_id", name="orders_checkout_session_id_key"),
        sa.CheckConstraint(f"status IN ({STATUSES})", name="orders_status_valid"),
        sa.CheckConstraint(f"payment_outcome IN ({OUTCOMES})", name="orders_payment_outcome_valid"),
        sa.CheckConstraint("grand_total_minor >= 0", name="orders_grand_total_non_negative"),
        sa.CheckConstraint(
            "subtotal_minor >= 0 AND discount_total_minor >= 0 AND shipping_total_minor >= 0 AND tax_total_minor >= 0",
            name="orders_totals_non_negative",
        ),
        sa.CheckConstraint(
            "grand_total_minor = subtotal_minor - discount_total_minor + shipping_total_minor + tax_total_minor",
            name="orders_grand_total_adds_up",
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "orders_customer_created_idx",
        "orders",
        ["customer_id", sa.text("created_at DESC"), sa.text("order_id DESC")],
        schema=SCHEMA,
    )
    op.create_table(
        "order_lines",
        sa.Column(
            "order_id",
            UUID(as_uuid=True),
            sa.ForeignKey(f"{SCHEMA}.orders.order_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("line_no", sa.Integer, primary_key=True),
        sa.Column("sku", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False, server_default=""),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger, nullable=False),
        sa.Column("line_total_minor", sa.BigInteger, nullable=False),
        sa.Column("warehouse_id", sa.Text, nullable=False, server_default=""),
        sa.Column("tax_class", sa.Text, nullable=False, server_default=""),
        sa.CheckConstraint("quantity > 0", name="order_lines_quantity_positive"),
        sa.CheckConstraint("unit_price_minor >= 0", name="order_lines_unit_price_non_negative"),
        sa.CheckConstraint("line_total_minor = unit_price_minor * quantity", name="order_lines_total_adds_up"),
        schema=SCHEMA,
    )
    op.create_table(
        "order_discounts",
        sa.Column(
            "order_id",
            UUID(as_uuid=True),
            sa.ForeignKey(f"{SCHEMA}.orders.order_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.CheckConstraint("amount_minor >= 0", name="order_discounts_amount_non_negative"),
        schema=SCHEMA,
    )
    op.create_table(
        "order_status_history",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "order_id",
            UUID(as_uuid=True),
            sa.ForeignKey(f"{SCHEMA}.orders.order_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("cause", sa.Text, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(f"status IN ({STATUSES})", name="order_status_history_status_valid"),
        schema=SCHEMA,
    )
    op.create_index("order_status_history_order_idx", "order_status_history", ["order_id", "id"], schema=SCHEMA)
    create_outbox_table_v1(op, SCHEMA)
    create_inbox_table_v1(op, SCHEMA)


def downgrade() -> None:
    for table in ("inbox", "outbox", "order_status_history", "order_discounts", "order_lines", "orders"):
        op.drop_table(table, schema=SCHEMA)
