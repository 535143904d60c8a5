"""orders.carrier (who carries a shipped order), its delivery window in business days, and the AUTHORIZED
payment outcome (capture on shipment).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from infra.migrate import SCHEMAS

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = SCHEMAS["order"]


def upgrade() -> None:
    op.add_column("orders", sa.Column("carrier", sa.Text, nullable=False, server_default=""), schema=SCHEMA)
    op.add_column("orders", sa.Column("delivery_min_days", sa.Integer), schema=SCHEMA)
    op.add_column("orders", sa.Column("delivery_max_days", sa.Integer), schema=SCHEMA)
    op.create_check_constraint(
        "orders_delivery_window_valid",
        "orders",
        "(delivery_min_days is null) = (delivery_max_days is null) and 0 <= delivery_min_days "
        "and delivery_min_days <= delivery_max_days",
        schema=SCHEMA,
    )
    op.drop_constraint("orders_payment_outcome_valid", "orders", schema=SCHEMA)
    op.create_check_constraint(
        "orders_payment_outcome_valid",
        "orders",
        "payment_outcome IN ('CAPTURED', 'CASH_ON_DELIVERY', 'FAILED', 'AUTHORIZED')",
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_constraint("orders_payment_outcome_valid", "orders", schema=SCHEMA)
    op.create_check_constraint(
        "orders_payment_outcome_valid",
        "orders",
        "payment_outcome IN ('CAPTURED', 'CASH_ON_DELIVERY', 'FAILED')",
        schema=SCHEMA,
    )
    op.drop_constraint("orders_delivery_window_valid", "orders", schema=SCHEMA)
    op.drop_column("orders", "delivery_max_days", schema=SCHEMA)
    op.drop_column("orders", "delivery_min_days", schema=SCHEMA)
    op.drop_column("orders", "carrier", schema=SCHEMA)
