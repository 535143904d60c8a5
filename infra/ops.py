"""kassa.ops.v1.OutboxService: a service's outbox backlog, for operators (``kassa outbox``, GET /v1/admin/outbox).

Every service with an outbox registers :func:`outbox_status_registration` in its bootstrap: one servicer,
shared, reading the service's own ``outbox`` table (infra.outbox) in one statement — unpublished rows (the
publisher's partial index on ``status <> 'sent'``), the age of the oldest, those whose last publish failed,
and when the last row was published (among the sent rows kept for the retention period). Admins only.
"""

from __future__ import annotations

from typing import Any

import grpc
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.auth import require_admin
from infra.db import single_statements
from infra.pb import timestamp_to_pb
from infra.server import Registration
from kassa.ops.v1 import outbox_service_pb2 as pb
from kassa.ops.v1 import outbox_service_pb2_grpc as pb_grpc
from kernel.validation import check_text

__all__ = ["OUTBOX_SERVICES", "OutboxStatusService", "outbox_status_registration"]

# The services that keep an outbox and serve OutboxService (settings.addr keys), in the gateway's order.
OUTBOX_SERVICES: tuple[str, ...] = ("checkout", "order", "payment", "warehouse", "promotion")


class OutboxStatusService(pb_grpc.OutboxServiceServicer):
    def __init__(self, engine: AsyncEngine, outbox: sa.Table, service: str) -> None:
        self._reader = single_statements(engine)
        self._service = service
        t = outbox
        unsent = t.c.status != "sent"
        self._stmt = sa.select(
            sa.func.count().filter(unsent).label("unpublished"),
            sa.func.count().filter(t.c.status == "processing").label("processing"),
            sa.func.count().filter(unsent, t.c.last_error.is_not(None)).label("failing"),
            sa.func.extract("epoch", sa.func.now() - sa.func.min(t.c.created_at).filter(unsent)).label("oldest_age"),
            sa.func.max(t.c.sent_at).label("last_sent"),
        )

    async def status(self) -> pb.OutboxStatus:
        async with self._reader.connect() as conn:
            row: Any = (await conn.execute(self._stmt)).one()
        out = pb.OutboxStatus(
            service=self._service,
            unpublished=row.unpublished,
            processing=row.processing,
            failing=row.failing,
            oldest_unpublished_age_seconds=max(float(row.oldest_age or 0), 0.0),
        )
        if row.last_sent is not None:
            out.last_published_time.CopyFrom(timestamp_to_pb(row.last_sent))
        return out

    async def GetOutboxStatus(
        self, request: pb.GetOutboxStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetOutboxStatusResponse:
        require_admin()
        check_text("service", request.service, max_length=64)
        if request.service and request.service != self._service:
            return pb.GetOutboxStatusResponse()
        return pb.GetOutboxStatusResponse(services=[await self.status()])


def outbox_status_registration(engine: AsyncEngine, outbox: sa.Table, service: str) -> Registration:
    return Registration(
        pb_grpc.add_OutboxServiceServicer_to_server,
        OutboxStatusService(engine, outbox, service),
        pb.DESCRIPTOR.services_by_name["OutboxService"].full_name,
    )
