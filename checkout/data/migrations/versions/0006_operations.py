"""Operating checkout (CheckoutAdminService): a DLQ entry can be PARKED by an operator, admin actions are kept
in an append-only audit log (infra.audit), and the funnel and the DLQ listing read through indexes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from infra.audit import create_audit_log_table_v1, drop_audit_log_table_v1

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "checkout"
_STATUS_CHECK = "failed_compensations_status_valid"


def upgrade() -> None:
    op.drop_constraint(_STATUS_CHECK, "failed_compensations", schema=SCHEMA, type_="check")
    op.create_check_constraint(
        _STATUS_CHECK, "failed_compensations", "status in ('pending','done','dead','parked')", schema=SCHEMA
    )
    op.create_index("failed_compensations_created_idx", "failed_compensations", ["created_at", "id"], schema=SCHEMA)
    op.create_index("carts_created_idx", "carts", ["created_at"], schema=SCHEMA)
    op.create_index("checkout_sessions_created_idx", "checkout_sessions", ["created_at"], schema=SCHEMA)
    op.create_index(
        "checkout_sessions_ended_idx",
        "checkout_sessions",
        ["updated_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("status in ('COMPLETED','CANCELLED')"),
    )
    create_audit_log_table_v1(op, SCHEMA)


def downgrade() -> None:
    drop_audit_log_table_v1(op, SCHEMA)
    op.drop_index("checkout_sessions_ended_idx", "checkout_sessions", schema=SCHEMA)
    op.drop_index("checkout_sessions_created_idx", "checkout_sessions", schema=SCHEMA)
    op.drop_index("carts_created_idx", "carts", schema=SCHEMA)
    op.drop_index("failed_compensations_created_idx", "failed_compensations", schema=SCHEMA)
    # Parked entries go back to the drain: the old constraint knows no 'parked'.
    op.execute(f"update {SCHEMA}.failed_compensations set status = 'pending' where status = 'parked'")
    op.drop_constraint(_STATUS_CHECK, "failed_compensations", schema=SCHEMA, type_="check")
    op.create_check_constraint(
        _STATUS_CHECK, "failed_compensations", "status in ('pending','done','dead')", schema=SCHEMA
    )
