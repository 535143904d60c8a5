"""The request a saga answers: checkout_sessions.confirm_fingerprint, set by ConfirmCheckout's durable guard
beside idempotency_key and cleared by the saga's last write, which keeps the answer (confirm_requests) in
the same transaction. Whoever ends the saga — the request itself or the recovery worker — so knows which
key and fingerprint the answer is kept for.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "checkout"


def upgrade() -> None:
    # Nullable, no default: no table rewrite, no long lock on a busy table. Sessions mid-saga when this runs
    # have none; their end keeps no answer (a repeat then finds a completed session's result on the session).
    op.add_column("checkout_sessions", sa.Column("confirm_fingerprint", sa.Text), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("checkout_sessions", "confirm_fingerprint", schema=SCHEMA)
