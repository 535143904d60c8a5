"""Notification's dead letters as gauges (kassa_dlq_depth / kassa_dlq_oldest_age_seconds, queue
``notification_dead_letters``), refreshed by infra.metrics.GaugeRefresher every 15 s: one statement, never per
message."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.db import single_statements
from infra.metrics import DLQ_DEPTH, DLQ_OLDEST_AGE
from notification.data.tables import dead_letters

__all__ = ["DLQ_QUEUE", "DeadLetterGauges"]

DLQ_QUEUE = "notification_dead_letters"

_d = dead_letters.c
_QUERY = sa.select(sa.func.count(), sa.extract("epoch", sa.func.now() - sa.func.min(_d.dead_at)))


class DeadLetterGauges:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = single_statements(engine)

    async def refresh(self) -> None:
        async with self._engine.connect() as conn:
            count, age = (await conn.execute(_QUERY)).one()
        DLQ_DEPTH.labels(DLQ_QUEUE, "dead").set(count)
        DLQ_OLDEST_AGE.labels(DLQ_QUEUE, "dead").set(float(age or 0))
