"""Payments by created_at, for the failure rates of a window (PaymentAdminService.GetPaymentFailureRates).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "payment"


def upgrade() -> None:
    op.create_index("payments_created_idx", "payments", ["created_at"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_index("payments_created_idx", "payments", schema=SCHEMA)
