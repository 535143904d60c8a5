"""Checkout's gauges that need a query: the DLQ of failed compensations and the sessions stuck mid-confirm.

Run by infra.metrics.GaugeRefresher every 15 s, never per checkout; each is one statement over a partial index
(or the small failed_compensations table) in autocommit.
"""

from __future__ import annotations

import sqlalchemy as sa
from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncEngine

from checkout.data.tables import checkout_sessions, failed_compensations
from checkout.model.session import SessionStatus
from infra.db import single_statements
from infra.metrics import DLQ_DEPTH, DLQ_OLDEST_AGE

__all__ = ["DLQ_QUEUE", "STUCK_SESSIONS", "CheckoutGauges"]

# The queue label of checkout's DLQ in kassa_dlq_depth / kassa_dlq_oldest_age_seconds.
DLQ_QUEUE = "checkout_failed_compensations"
# Statuses of failed_compensations that are still a problem (done rows are history). A parked entry is one an
# operator stopped: a void it holds back keeps an authorization open (DESIGN.md §4.3), so it stays in sight.
_OPEN_STATUSES = ("pending", "dead", "parked")

STUCK_SESSIONS = Gauge(
    "kassa_checkout_stuck_sessions",
    "Sessions CONFIRMING with no saga write for longer than the recovery lease (recovery takes them over)",
)

_fc = failed_compensations
_DLQ = (
    sa.select(
        _fc.c.status,
        sa.func.count(),
        sa.extract("epoch", sa.func.now() - sa.func.min(_fc.c.created_at)),
    )
    .where(_fc.c.status.in_(_OPEN_STATUSES))
    .group_by(_fc.c.status)
)
_s = checkout_sessions


class CheckoutGauges:
    def __init__(self, engine: AsyncEngine, stuck_after_seconds: float) -> None:
        self._engine = single_statements(engine)
        self._stuck = (
            sa.select(sa.func.count())
            .select_from(_s)
            .where(
                _s.c.status == SessionStatus.CONFIRMING.value,
                # The predicate of ListStuckSessions and the recovery worker's claim (a saga's lease renewal
                # and a recovery's claim move confirm_started_at), over the sessions_confirming partial index.
                _s.c.confirm_started_at < sa.func.now() - sa.text(f"interval '{int(stuck_after_seconds)} seconds'"),
            )
        )

    async def refresh_dlq(self) -> None:
        async with self._engine.connect() as conn:
            rows = {row[0]: (row[1], float(row[2] or 0)) for row in (await conn.execute(_DLQ)).all()}
        for status in _OPEN_STATUSES:
            count, age = rows.get(status, (0, 0.0))
            DLQ_DEPTH.labels(DLQ_QUEUE, status).set(count)
            DLQ_OLDEST_AGE.labels(DLQ_QUEUE, status).set(age)

    async def refresh_stuck(self) -> None:
        async with self._engine.connect() as conn:
            STUCK_SESSIONS.set((await conn.execute(self._stuck)).scalar_one())
