"""The promotion schema (SQLAlchemy Core). Kept in step with migrations/versions by hand."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

from infra.audit import audit_log_table
from infra.migrate import SCHEMAS
from infra.outbox import inbox_table, outbox_table

__all__ = ["SCHEMA", "audit_log", "inbox", "metadata", "outbox", "promotion_usages", "promotions"]

SCHEMA = SCHEMAS["promotion"]
metadata = sa.MetaData(schema=SCHEMA)

promotions = sa.Table(
    "promotions",
    metadata,
    sa.Column("promotion_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("code", sa.Text, nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("percent_off", sa.Integer, nullable=False, server_default="0"),
    sa.Column("amount_off_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("currency_code", sa.Text, nullable=False, server_default=""),
    sa.Column("usage_limit", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("usage_limit_per_customer", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("min_subtotal_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("starts_at", sa.DateTime(timezone=True)),
    sa.Column("ends_at", sa.DateTime(timezone=True)),
    sa.Column("combinable", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("conditions", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("used_count", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("reserved_count", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("code = upper(code) and code <> ''", name="promotions_code_upper"),
    sa.CheckConstraint(
        "type in ('PERCENTAGE','FIXED_AMOUNT','FREE_SHIPPING','BUY_X_GET_Y')", name="promotions_type_valid"
    ),
    sa.CheckConstraint("percent_off between 0 and 100", name="promotions_percent_range"),
    sa.CheckConstraint(
        "amount_off_minor >= 0 and min_subtotal_minor >= 0 and usage_limit >= 0 and usage_limit_per_customer >= 0",
        name="promotions_amounts_non_negative",
    ),
    sa.CheckConstraint("used_count >= 0 and reserved_count >= 0", name="promotions_counts_non_negative"),
    sa.CheckConstraint(
        "usage_limit = 0 or used_count + reserved_count <= usage_limit", name="promotions_usage_within_limit"
    ),
    sa.CheckConstraint("starts_at is null or ends_at is null or ends_at > starts_at", name="promotions_window_ordered"),
)

promotion_usages = sa.Table(
    "promotion_usages",
    metadata,
    sa.Column(
        "promotion_id",
        UUID(as_uuid=True),
        sa.ForeignKey(f"{SCHEMA}.promotions.promotion_id"),
        primary_key=True,
    ),
    sa.Column("reservation_ref", sa.Text, primary_key=True),
    sa.Column("code", sa.Text, nullable=False),
    sa.Column("customer_id", sa.Text, nullable=False),
    # promotion.model.customer.email_key of the order's email; NULL without one (NULL never equals a key).
    sa.Column("customer_email_key", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("discount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency_code", sa.Text, nullable=False),
    sa.Column("free_shipping", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("reserved_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("confirmed_at", sa.DateTime(timezone=True)),
    sa.Column("released_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint(
        "status in ('reserved','confirmed','released','returned')", name="promotion_usages_status_valid"
    ),
    sa.CheckConstraint("discount_minor >= 0", name="promotion_usages_discount_non_negative"),
    sa.Index("promotion_usages_ref_idx", "reservation_ref"),
    sa.Index(
        "promotion_usages_customer_idx",
        "promotion_id",
        "customer_id",
        postgresql_where=sa.text("status in ('reserved','confirmed')"),
    ),
    sa.Index(
        "promotion_usages_mailbox_idx",
        "promotion_id",
        "customer_email_key",
        postgresql_where=sa.text("status in ('reserved','confirmed')"),
    ),
)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)

# Admin actions (CreatePromotion): append-only, see infra.audit.
audit_log = audit_log_table(metadata)
