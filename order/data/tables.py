"""The orders schema (SQLAlchemy Core). Migrations in data/migrations/versions mirror this.

Personal data — the email, both addresses (each one JSON document, phone included) and the notes — is
stored as infra.pii tokens (``pii1:<kid>:…``), never as plain text; an empty email or notes stays "".
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID

from infra.audit import audit_log_table
from infra.migrate import SCHEMAS
from infra.outbox import inbox_table, outbox_table
from order.model.order import OrderStatus, PaymentOutcome, PaymentStatus

__all__ = [
    "SCHEMA",
    "audit_log",
    "history",
    "inbox",
    "metadata",
    "order_discounts",
    "order_lines",
    "orders",
    "outbox",
]

SCHEMA = SCHEMAS["order"]
metadata = sa.MetaData(schema=SCHEMA)

STATUS_VALUES = ", ".join(f"'{s.value}'" for s in OrderStatus)
OUTCOME_VALUES = ", ".join(f"'{o.value}'" for o in PaymentOutcome)
PAYMENT_STATUS_VALUES = ", ".join(f"'{p.value}'" for p in PaymentStatus)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("order_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("checkout_session_id", sa.Text, nullable=False),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("email", sa.Text, nullable=False, server_default=""),  # a token
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("currency_code", sa.String(3), nullable=False),
    sa.Column("subtotal_minor", sa.BigInteger, nullable=False),
    sa.Column("discount_total_minor", sa.BigInteger, nullable=False),
    sa.Column("shipping_total_minor", sa.BigInteger, nullable=False),
    sa.Column("tax_total_minor", sa.BigInteger, nullable=False),
    sa.Column("grand_total_minor", sa.BigInteger, nullable=False),
    sa.Column("shipping_address", sa.Text, nullable=False),  # a token of the address's JSON
    sa.Column("billing_address", sa.Text),  # a token of the address's JSON
    sa.Column("shipping_method", sa.Text, nullable=False),
    sa.Column("payment_id", sa.Text, nullable=False, server_default=""),
    sa.Column("payment_method", sa.Text, nullable=False),
    sa.Column("payment_outcome", sa.Text),
    sa.Column("payment_status", sa.Text, nullable=False, server_default="UNSPECIFIED"),
    sa.Column("notes", sa.Text, nullable=False, server_default=""),  # a token
    sa.Column("tracking_number", sa.Text, nullable=False, server_default=""),
    sa.Column("carrier", sa.Text, nullable=False, server_default=""),
    sa.Column("delivery_min_days", sa.Integer),
    sa.Column("delivery_max_days", sa.Integer),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    # Invariant 2: at most one order per checkout session.
    sa.UniqueConstraint("checkout_session_id", name="orders_checkout_session_id_key"),
    sa.CheckConstraint(f"status IN ({STATUS_VALUES})", name="orders_status_valid"),
    sa.CheckConstraint(f"payment_outcome IN ({OUTCOME_VALUES})", name="orders_payment_outcome_valid"),
    sa.CheckConstraint(f"payment_status IN ({PAYMENT_STATUS_VALUES})", name="orders_payment_status_valid"),
    sa.CheckConstraint("grand_total_minor >= 0", name="orders_grand_total_non_negative"),
    sa.CheckConstraint(
        "subtotal_minor >= 0 AND discount_total_minor >= 0 AND shipping_total_minor >= 0 AND tax_total_minor >= 0",
        name="orders_totals_non_negative",
    ),
    sa.CheckConstraint(
        "grand_total_minor = subtotal_minor - discount_total_minor + shipping_total_minor + tax_total_minor",
        name="orders_grand_total_adds_up",
    ),
    sa.Index("orders_customer_created_idx", "customer_id", sa.text("created_at DESC"), sa.text("order_id DESC")),
)

order_lines = sa.Table(
    "order_lines",
    metadata,
    sa.Column(
        "order_id", UUID(as_uuid=True), sa.ForeignKey(f"{SCHEMA}.orders.order_id", ondelete="CASCADE"), primary_key=True
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
)

order_discounts = sa.Table(
    "order_discounts",
    metadata,
    sa.Column(
        "order_id", UUID(as_uuid=True), sa.ForeignKey(f"{SCHEMA}.orders.order_id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("code", sa.Text, nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.CheckConstraint("amount_minor >= 0", name="order_discounts_amount_non_negative"),
)

history = sa.Table(
    "order_status_history",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column(
        "order_id", UUID(as_uuid=True), sa.ForeignKey(f"{SCHEMA}.orders.order_id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("cause", sa.Text, nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint(f"status IN ({STATUS_VALUES})", name="order_status_history_status_valid"),
    sa.Index("order_status_history_order_idx", "order_id", "id"),
)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
# Admin actions (UpdateFulfillment, CancelOrder by an admin, and any other RPC an admin calls): append-only,
# see infra.audit.
audit_log = audit_log_table(metadata)
