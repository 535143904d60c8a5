"""Per-customer limits count the customer's mailbox too: promotion_usages.customer_email_key and its index.

A guest's subject is new with every guest token; the key of the order's mailbox
(promotion.model.customer.email_key) is not. Uses recorded before this have none (NULL), so
they keep counting by customer id alone.

Revision ID: promotion_0003
Revises: promotion_0002
Create Date: 2026-12-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from infra.migrate import SCHEMAS

revision: str = "promotion_0003"
down_revision: str | Sequence[str] | None = "promotion_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = SCHEMAS["promotion"]


def upgrade() -> None:
    op.add_column("promotion_usages", sa.Column("customer_email_key", sa.Text), schema=SCHEMA)
    op.create_index(
        "promotion_usages_mailbox_idx",
        "promotion_usages",
        ["promotion_id", "customer_email_key"],
        schema=SCHEMA,
        postgresql_where=sa.text("status in ('reserved','confirmed')"),
    )


def downgrade() -> None:
    op.drop_index("promotion_usages_mailbox_idx", "promotion_usages", schema=SCHEMA)
    op.drop_column("promotion_usages", "customer_email_key", schema=SCHEMA)
