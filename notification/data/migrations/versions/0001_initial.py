"""Notification: messages (one per event and kind), dead letters, inbox.

Revision ID: notification_0001
Revises:
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from infra.migrate import SCHEMAS
from infra.outbox import create_inbox_table_v1

revision: str = "notification_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = SCHEMAS["notification"]


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("message_id", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("order_id", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("event_id", "kind", name="messages_event_kind_key"),
        sa.CheckConstraint("status in ('SENDING','SENT','DEAD')", name="messages_status_valid"),
        schema=SCHEMA,
    )
    op.create_index("messages_order_idx", "messages", ["order_id"], schema=SCHEMA)
    op.create_index("messages_created_idx", "messages", ["created_at"], schema=SCHEMA)
    op.create_table(
        "dead_letters",
        sa.Column("message_id", sa.Text, sa.ForeignKey(f"{SCHEMA}.messages.message_id"), primary_key=True),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("dead_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=SCHEMA,
    )
    create_inbox_table_v1(op, SCHEMA)


def downgrade() -> None:
    op.drop_table("inbox", schema=SCHEMA)
    op.drop_table("dead_letters", schema=SCHEMA)
    op.drop_table("messages", schema=SCHEMA)
