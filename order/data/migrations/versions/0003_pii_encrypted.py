"""Personal data encrypted at rest: orders.email, shipping_address, billing_address and notes hold infra.pii tokens.

The addresses become text (a token of the address's JSON) instead of jsonb. Orders already there are
encrypted in place, in this migration's transaction, with the current key of KASSA_PII_KEYS (only asked
for when there is a row); the downgrade decrypts them back.

Revision ID: 0003
Revises: 0002
Create Date: 2025-07-01
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from infra.migrate import pii_cipher

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "orders"
COLUMNS = ("email", "shipping_address", "billing_address", "notes")
BATCH = 500


def _rewrite(change: Callable[[str], str]) -> None:
    """Every order's personal columns through ``change`` (NULL and "" untouched), a batch at a time."""
    conn = op.get_bind()
    select = sa.text(
        f"SELECT order_id, {', '.join(COLUMNS)} FROM {SCHEMA}.orders"
        f" WHERE order_id > :after ORDER BY order_id LIMIT {BATCH}"
    )
    update = sa.text(
        f"UPDATE {SCHEMA}.orders SET {', '.join(f'{c} = :{c}' for c in COLUMNS)} WHERE order_id = :order_id"
    )
    after = uuid.UUID(int=0)
    while rows := conn.execute(select, {"after": after}).all():
        conn.execute(
            update,
            [
                {"order_id": row.order_id, **{c: change(v) if v else v for c, v in zip(COLUMNS, row[1:], strict=True)}}
                for row in rows
            ],
        )
        after = rows[-1].order_id


def upgrade() -> None:
    for column in ("shipping_address", "billing_address"):
        op.alter_column("orders", column, type_=sa.Text, postgresql_using=f"{column}::text", schema=SCHEMA)
    _rewrite(lambda plain: pii_cipher().encrypt(plain))


def downgrade() -> None:
    _rewrite(lambda token: pii_cipher().decrypt(token))
    for column in ("shipping_address", "billing_address"):
        op.alter_column("orders", column, type_=JSONB, postgresql_using=f"{column}::jsonb", schema=SCHEMA)
