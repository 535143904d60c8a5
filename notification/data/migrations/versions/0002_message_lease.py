"""A lease on a message's claim: who holds the SENDING row (claim_token) and until when (lease_until), so two
replicas never send one notice at once and a claim left by a crashed process is taken over once it lapses.

Revision ID: notification_0002
Revises: notification_0001
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from infra.migrate import SCHEMAS

revision: str = "notification_0002"
down_revision: str | Sequence[str] | None = "notification_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = SCHEMAS["notification"]


def upgrade() -> None:
    op.add_column("messages", sa.Column("claim_token", sa.Text, nullable=False, server_default=""), schema=SCHEMA)
    op.add_column("messages", sa.Column("claimed_at", sa.DateTime(timezone=True)), schema=SCHEMA)
    op.add_column("messages", sa.Column("lease_until", sa.DateTime(timezone=True)), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("messages", "lease_until", schema=SCHEMA)
    op.drop_column("messages", "claimed_at", schema=SCHEMA)
    op.drop_column("messages", "claim_token", schema=SCHEMA)
