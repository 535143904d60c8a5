"""orders.payment_status: the order's payment as the order service last learned it.

Existing orders take what they already tell: cash on delivery, or a captured payment recorded by
checkout; every other order stays UNSPECIFIED until its next payment event.

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "orders"
PAYMENT_STATUSES = (
    "'UNSPECIFIED', 'PENDING', 'REQUIRES_ACTION', 'AUTHORIZED', 'CAPTURED', 'PARTIALLY_REFUNDED', 'REFUNDED', "
    "'VOIDED', 'DECLINED', 'FAILED', 'CASH_ON_DELIVERY'"
)


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column("payment_status", sa.Text, nullable=False, server_default="UNSPECIFIED"),
        schema=SCHEMA,
    )
    op.create_check_constraint(
        "orders_payment_status_valid", "orders", f"payment_status IN ({PAYMENT_STATUSES})", schema=SCHEMA
    )
    op.execute(
        f"UPDATE {SCHEMA}.orders SET payment_status = CASE "
        "WHEN payment_method = 'cod' THEN 'CASH_ON_DELIVERY' ELSE 'CAPTURED' END "
        "WHERE payment_method = 'cod' OR payment_outcome = 'CAPTURED'"
    )


def downgrade() -> None:
    op.drop_constraint("orders_payment_status_valid", "orders", schema=SCHEMA)
    op.drop_column("orders", "payment_status", schema=SCHEMA)
