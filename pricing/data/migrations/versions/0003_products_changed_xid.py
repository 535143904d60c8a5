"""products.changed_xid: the transaction that last wrote each product, so SyncProducts can send only changes.

Every existing product gets this migration's transaction id, so a copy synced before it is sent them all once.

Revision ID: pricing_0003
Revises: pricing_0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from infra.migrate import SCHEMAS

revision: str = "pricing_0003"
down_revision: str | None = "pricing_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = SCHEMAS["pricing"]


def upgrade() -> None:
    op.execute(f"ALTER TABLE {SCHEMA}.products ADD COLUMN changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id()")
    op.create_index("products_changed_xid", "products", ["changed_xid"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_index("products_changed_xid", table_name="products", schema=SCHEMA)
    op.drop_column("products", "changed_xid", schema=SCHEMA)
