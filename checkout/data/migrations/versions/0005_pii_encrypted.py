"""Personal data encrypted at rest: a session's email, notes, shipping_address and billing_address hold infra.pii
tokens, and so do the copies of them in saga_state (the CreateOrder draft's email, notes and addresses, the
AuthorizePayment request's customer_email).

The addresses become text (a token of the address's JSON) instead of jsonb, and the notes lose their
length check (a token is longer than what it holds; the 500-character cap is checked before writing).
Sessions already there are encrypted in place, in this migration's transaction, with the current key of
KASSA_PII_KEYS (only asked for when there is a row); the downgrade decrypts them back.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from infra.migrate import pii_cipher
from infra.pii import PiiCipher

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "checkout"
TEXT = ("email", "notes")
ADDRESSES = ("shipping_address", "billing_address")
BATCH = 500


def _saga(doc: dict[str, Any], cipher: PiiCipher, *, seal: bool) -> dict[str, Any]:
    """The saga state with the draft's and the authorization's personal fields sealed (or opened)."""
    text = cipher.encrypt if seal else cipher.decrypt
    if doc.get("order_draft"):
        draft = doc["order_draft"] = dict(doc["order_draft"])
        for name in TEXT:
            draft[name] = text(draft.get(name) or "")
        for name in ADDRESSES:
            draft[name] = cipher.encrypt_json(draft.get(name)) if seal else cipher.decrypt_json(draft.get(name))
    if doc.get("authorize"):
        doc["authorize"] = {**doc["authorize"], "customer_email": text(doc["authorize"].get("customer_email") or "")}
    return doc


def _rewrite(*, seal: bool) -> None:
    """Every session's personal data sealed (or opened), a batch at a time; NULL and "" stay as they are."""
    conn = op.get_bind()
    columns = (*TEXT, *ADDRESSES)
    select = sa.text(
        f"SELECT session_id, {', '.join(columns)}, saga_state FROM {SCHEMA}.checkout_sessions"
        f" WHERE session_id > :after ORDER BY session_id LIMIT {BATCH}"
    )
    update = sa.text(
        f"UPDATE {SCHEMA}.checkout_sessions SET {', '.join(f'{c} = :{c}' for c in columns)},"
        " saga_state = CAST(:saga_state AS jsonb) WHERE session_id = :session_id"
    )
    after = uuid.UUID(int=0)
    while rows := conn.execute(select, {"after": after}).all():
        cipher = pii_cipher()  # asked for only when there is a row
        text = cipher.encrypt if seal else cipher.decrypt
        conn.execute(
            update,
            [
                {
                    "session_id": row.session_id,
                    # The address columns hold the address's JSON as text here (after the type change, before it back).
                    **{c: text(getattr(row, c)) if getattr(row, c) else getattr(row, c) for c in columns},
                    "saga_state": json.dumps(_saga(dict(row.saga_state or {}), cipher, seal=seal)),
                }
                for row in rows
            ],
        )
        after = rows[-1].session_id


def upgrade() -> None:
    op.drop_constraint("checkout_sessions_notes_max", "checkout_sessions", schema=SCHEMA)
    for column in ADDRESSES:
        op.alter_column("checkout_sessions", column, type_=sa.Text, postgresql_using=f"{column}::text", schema=SCHEMA)
    _rewrite(seal=True)


def downgrade() -> None:
    _rewrite(seal=False)
    for column in ADDRESSES:
        op.alter_column("checkout_sessions", column, type_=JSONB, postgresql_using=f"{column}::jsonb", schema=SCHEMA)
    op.create_check_constraint(
        "checkout_sessions_notes_max", "checkout_sessions", "length(notes) <= 500", schema=SCHEMA
    )
