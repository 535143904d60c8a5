"""Warehouses, stock per sku and warehouse, reservations, outbox.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

from infra.outbox import create_outbox_table_v1

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "warehouse"


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    ]


def upgrade() -> None:
    op.create_table(
        "warehouses",
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
        schema=SCHEMA,
    )
    op.create_table(
        "stock",
        sa.Column("sku", sa.Text, primary_key=True),
        sa.Column("warehouse_id", sa.Text, primary_key=True),
        sa.Column("on_hand", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("reserved", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.ForeignKeyConstraint(["warehouse_id"], [f"{SCHEMA}.warehouses.warehouse_id"], name="stock_warehouse_fk"),
        sa.CheckConstraint("on_hand >= 0", name="stock_on_hand_non_negative"),
        sa.CheckConstraint("reserved >= 0 AND reserved <= on_hand", name="stock_reserved_within_on_hand"),
        schema=SCHEMA,
    )
    op.create_table(
        "reservations",
        sa.Column("reservation_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("reservation_ref", sa.Text, nullable=False),
        sa.Column("sku", sa.Text, nullable=False),
        sa.Column("warehouse_id", sa.Text, nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["sku", "warehouse_id"],
            [f"{SCHEMA}.stock.sku", f"{SCHEMA}.stock.warehouse_id"],
            name="reservations_stock_fk",
        ),
        sa.UniqueConstraint("reservation_ref", "sku", "warehouse_id", name="reservations_ref_sku_warehouse_key"),
        sa.CheckConstraint("quantity > 0", name="reservations_quantity_positive"),
        sa.CheckConstraint(
            "status IN ('active', 'confirmed', 'released', 'expired')", name="reservations_status_valid"
        ),
        schema=SCHEMA,
    )
    op.create_index("reservations_status_expires_idx", "reservations", ["status", "expires_at"], schema=SCHEMA)
    create_outbox_table_v1(op, SCHEMA)


def downgrade() -> None:
    op.drop_table("outbox", schema=SCHEMA)
    op.drop_table("reservations", schema=SCHEMA)
    op.drop_table("stock", schema=SCHEMA)
    op.drop_table("warehouses", schema=SCHEMA)
