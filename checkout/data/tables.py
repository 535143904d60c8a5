"""Checkout's tables (schema "checkout"), SQLAlchemy Core. Migrations mirror this file by hand.

Personal data is stored as infra.pii tokens, never as plain text (see checkout.data.repositories): a
session's email, notes and addresses (each one token of the address's JSON, phone included), and in its
saga_state the CreateOrder draft's and the AuthorizePayment request's copies of them.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from infra.audit import audit_log_table
from infra.migrate import SCHEMAS
from infra.outbox import outbox_table

__all__ = [
    "SCHEMA",
    "audit_log",
    "cart_items",
    "carts",
    "checkout_sessions",
    "confirm_requests",
    "failed_compensations",
    "metadata",
    "outbox",
]

SCHEMA = SCHEMAS["checkout"]
metadata = sa.MetaData(schema=SCHEMA)

_NOW = sa.func.now()

carts = sa.Table(
    "carts",
    metadata,
    sa.Column("cart_id", UUID(as_uuid=False), primary_key=True),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="ACTIVE"),
    sa.Column("currency_code", sa.String(3), nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    sa.CheckConstraint("status in ('ACTIVE','CHECKOUT','CONVERTED')", name="carts_status_valid"),
    sa.CheckConstraint("currency_code ~ '^[A-Z]{3}$'", name="carts_currency_valid"),
    sa.Index("carts_customer_idx", "customer_id"),
    sa.Index("carts_created_idx", "created_at"),
)

cart_items = sa.Table(
    "cart_items",
    metadata,
    sa.Column("cart_id", UUID(as_uuid=False), sa.ForeignKey("carts.cart_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("unit_price_minor", sa.BigInteger, nullable=False),
    sa.Column("added_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    sa.CheckConstraint("quantity > 0", name="cart_items_quantity_positive"),
    sa.CheckConstraint("unit_price_minor >= 0", name="cart_items_price_non_negative"),
)

checkout_sessions = sa.Table(
    "checkout_sessions",
    metadata,
    sa.Column("session_id", UUID(as_uuid=False), primary_key=True),
    sa.Column("cart_id", UUID(as_uuid=False), sa.ForeignKey("carts.cart_id"), nullable=False),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="OPEN"),
    sa.Column("currency_code", sa.String(3), nullable=False),
    sa.Column("email", sa.Text, nullable=False, server_default=""),  # a token
    sa.Column("shipping_address", sa.Text),  # a token of the address's JSON
    sa.Column("billing_address", sa.Text),  # a token of the address's JSON
    sa.Column("shipping_method", sa.Text, nullable=False, server_default=""),
    sa.Column("payment_method", sa.Text, nullable=False, server_default=""),
    sa.Column("promotion_codes", ARRAY(sa.Text), nullable=False, server_default="{}"),
    # A token; its 500-character cap is checked before it is written (checkout.service.validation), since a token
    # is longer than what it holds.
    sa.Column("notes", sa.Text, nullable=False, server_default=""),
    sa.Column("lines", JSONB, nullable=False),
    sa.Column("preview", JSONB),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("idempotency_key", sa.Text),
    # The fingerprint of the ConfirmCheckout request driving the saga, until its answer is kept (confirm_requests).
    sa.Column("confirm_fingerprint", sa.Text),
    sa.Column("saga_step", sa.Text),
    sa.Column("saga_state", JSONB, nullable=False, server_default="{}"),
    sa.Column("result", JSONB),
    sa.Column("confirm_started_at", sa.DateTime(timezone=True)),
    sa.Column("saga_attempt", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("order_id", sa.Text, nullable=False, server_default=""),
    sa.Column("last_error", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    sa.CheckConstraint(
        "status in ('OPEN','CONFIRMING','COMPLETED','EXPIRED','CANCELLED','AWAITING_PAYMENT')",
        name="checkout_sessions_status_valid",
    ),
    sa.CheckConstraint(
        "idempotency_key is null or length(idempotency_key) between 1 and 255",
        name="checkout_sessions_idempotency_key_length",
    ),
    sa.CheckConstraint("cardinality(promotion_codes) <= 5", name="checkout_sessions_promotion_codes_max"),
    # One cart has at most one live session.
    sa.Index(
        "checkout_sessions_one_live_per_cart",
        "cart_id",
        unique=True,
        postgresql_where=sa.text("status in ('OPEN','CONFIRMING')"),
    ),
    # One idempotency key confirms one session of a customer.
    sa.Index(
        "checkout_sessions_idempotency_key_uq",
        "customer_id",
        "idempotency_key",
        unique=True,
        postgresql_where=sa.text("idempotency_key is not null"),
    ),
    sa.Index("checkout_sessions_open_expiry_idx", "expires_at", postgresql_where=sa.text("status = 'OPEN'")),
    sa.Index(
        "checkout_sessions_confirming_idx", "confirm_started_at", postgresql_where=sa.text("status = 'CONFIRMING'")
    ),
    sa.Index(
        "checkout_sessions_awaiting_payment_idx", "updated_at", postgresql_where=sa.text("status = 'AWAITING_PAYMENT'")
    ),
    # The funnel (CheckoutAdminService.GetFunnel): sessions started, and sessions that ended, in a window.
    sa.Index("checkout_sessions_created_idx", "created_at"),
    sa.Index(
        "checkout_sessions_ended_idx",
        "updated_at",
        postgresql_where=sa.text("status in ('COMPLETED','CANCELLED')"),
    ),
)

# What each (customer, Idempotency-Key) of ConfirmCheckout answered, so a repeat replays it for 24 h,
# failures included, and a repeat with other parameters (another fingerprint) is refused.
confirm_requests = sa.Table(
    "confirm_requests",
    metadata,
    sa.Column("customer_id", sa.Text, primary_key=True),
    sa.Column("idempotency_key", sa.Text, primary_key=True),
    sa.Column("session_id", UUID(as_uuid=False), nullable=False),
    sa.Column("fingerprint", sa.Text, nullable=False),
    sa.Column("response", JSONB, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    sa.Index("confirm_requests_created_idx", "created_at"),
)

failed_compensations = sa.Table(
    "failed_compensations",
    metadata,
    sa.Column("id", UUID(as_uuid=False), primary_key=True),
    sa.Column("session_id", UUID(as_uuid=False), nullable=False),
    sa.Column("operation", sa.Text, nullable=False),
    sa.Column("payload", JSONB, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    sa.Column("status", sa.Text, nullable=False, server_default="pending"),
    sa.Column("last_error", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    sa.CheckConstraint("status in ('pending','done','dead','parked')", name="failed_compensations_status_valid"),
    sa.CheckConstraint(
        "operation in ('void_authorization','release_reservations','release_promotion','confirm_reservations',"
        "'confirm_promotion','capture_payment','record_payment','cart_cleanup','refund_payment')",
        name="failed_compensations_operation_valid",
    ),
    sa.CheckConstraint("attempts >= 0", name="failed_compensations_attempts_non_negative"),
    sa.Index("failed_compensations_due_idx", "next_attempt_at", postgresql_where=sa.text("status = 'pending'")),
    sa.Index("failed_compensations_session_idx", "session_id"),
    sa.Index("failed_compensations_created_idx", "created_at", "id"),
)

outbox = outbox_table(metadata)
audit_log = audit_log_table(metadata)
