"""The notification schema (SQLAlchemy Core). Kept in step with migrations/versions by hand.

``messages`` holds one row per (event, kind): the claim taken before a send (SENDING, leased to one sender
until ``lease_until``), settled SENT or DEAD. The
recipient is an ``infra.pii`` token (encrypted at rest, like the order's copy); the subject names the order
only; bodies are not kept (they are rendered again from the order when needed). ``dead_letters`` lists what
could not be delivered, for operators.
"""

from __future__ import annotations

import sqlalchemy as sa

from infra.audit import audit_log_table
from infra.migrate import SCHEMAS
from infra.outbox import inbox_table

__all__ = ["SCHEMA", "audit_log", "dead_letters", "inbox", "messages", "metadata"]

SCHEMA = SCHEMAS["notification"]
metadata = sa.MetaData(schema=SCHEMA)

messages = sa.Table(
    "messages",
    metadata,
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
    # The lease on a SENDING row (migration 0002): who holds it and until when; empty/NULL once settled.
    sa.Column("claim_token", sa.Text, nullable=False, server_default=""),
    sa.Column("claimed_at", sa.DateTime(timezone=True)),
    sa.Column("lease_until", sa.DateTime(timezone=True)),
    # What the notice said besides its kind (migration 0003), so a dead letter can be rendered again.
    sa.Column("cause", sa.Text, nullable=False, server_default=""),
    sa.Column("amount_currency", sa.Text),
    sa.Column("amount_minor", sa.BigInteger),
    sa.Column("payment_outcome", sa.Text, nullable=False, server_default=""),
    sa.UniqueConstraint("event_id", "kind", name="messages_event_kind_key"),
    sa.CheckConstraint("status in ('SENDING','SENT','DEAD')", name="messages_status_valid"),
    sa.Index("messages_order_idx", "order_id"),
    sa.Index("messages_created_idx", "created_at"),
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("message_id", sa.Text, sa.ForeignKey(messages.c.message_id), primary_key=True),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("dead_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

inbox = inbox_table(metadata)

# Admin actions (ReplayDeadLetter), append-only (infra.audit).
audit_log = audit_log_table(metadata)
