"""The warehouse schema (SQLAlchemy Core). The CHECK constraints are the last line against oversell."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID

from infra.audit import audit_log_table
from infra.migrate import SCHEMAS
from infra.outbox import inbox_table, outbox_table

__all__ = ["SCHEMA", "audit_log", "inbox", "metadata", "outbox", "reservations", "stock", "warehouses"]

SCHEMA = SCHEMAS["warehouse"]
metadata = sa.MetaData(schema=SCHEMA)


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    ]


warehouses = sa.Table(
    "warehouses",
    metadata,
    sa.Column("warehouse_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("address_name", sa.Text, nullable=False, server_default=""),
    sa.Column("line1", sa.Text, nullable=False, server_default=""),
    sa.Column("line2", sa.Text, nullable=False, server_default=""),
    sa.Column("city", sa.Text, nullable=False, server_default=""),
    sa.Column("region", sa.Text, nullable=False, server_default=""),
    sa.Column("postal_code", sa.Text, nullable=False, server_default=""),
    sa.Column("country_code", sa.Text, nullable=False),
    sa.Column("phone", sa.Text, nullable=False, server_default=""),
    *_timestamps(),
    sa.CheckConstraint("warehouse_id <> ''", name="warehouses_id_not_empty"),
    sa.CheckConstraint("country_code ~ '^[A-Z]{2}$'", name="warehouses_country_code_valid"),
)

stock = sa.Table(
    "stock",
    metadata,
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column(
        "warehouse_id",
        sa.Text,
        sa.ForeignKey(warehouses.c.warehouse_id, name="stock_warehouse_fk"),
        primary_key=True,
    ),
    sa.Column("on_hand", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("reserved", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("on_hand >= 0", name="stock_on_hand_non_negative"),
    sa.CheckConstraint("reserved >= 0 AND reserved <= on_hand", name="stock_reserved_within_on_hand"),
)

reservations = sa.Table(
    "reservations",
    metadata,
    sa.Column("reservation_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("reservation_ref", sa.Text, nullable=False),
    sa.Column("sku", sa.Text, nullable=False),
    sa.Column("warehouse_id", sa.Text, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    *_timestamps(),
    sa.ForeignKeyConstraint(["sku", "warehouse_id"], [stock.c.sku, stock.c.warehouse_id], name="reservations_stock_fk"),
    sa.UniqueConstraint("reservation_ref", "sku", "warehouse_id", name="reservations_ref_sku_warehouse_key"),
    sa.CheckConstraint("quantity > 0", name="reservations_quantity_positive"),
    sa.CheckConstraint(
        "status IN ('active', 'confirmed', 'released', 'expired', 'restocked')", name="reservations_status_valid"
    ),
    sa.Index("reservations_status_expires_idx", "status", "expires_at"),
)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)

# Admin actions (SetStock, UpsertWarehouses): append-only, see infra.audit.
audit_log = audit_log_table(metadata)
