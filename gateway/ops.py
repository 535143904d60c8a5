"""GET /v1/admin/outbox: the outbox status of every service that has one, in one answer.

Each such service (``infra.ops.OUTBOX_SERVICES``) serves ``kassa.ops.v1.OutboxService`` for its own outbox;
the one route asks them all at once (or only ``?service=``) and lists their answers in that order. An error
from any service is the answer: a table missing a row would read as a service with nothing owed.
"""

from __future__ import annotations

import asyncio
from typing import cast

from google.protobuf import message

from gateway.backends import Backends, Metadata
from gateway.routing import RpcMethod
from infra.ops import OUTBOX_SERVICES
from kassa.ops.v1 import outbox_service_pb2 as pb
from kernel import errors

__all__ = ["OPS_BACKEND", "outbox_status"]

# What gateway.routing.rpc_method names the backend of kassa.ops.v1 (its package's <svc>).
OPS_BACKEND = "ops"


async def outbox_status(
    backends: Backends, method: RpcMethod, request: message.Message, metadata: Metadata
) -> pb.GetOutboxStatusResponse:
    req = cast(pb.GetOutboxStatusRequest, request)
    if req.service and req.service not in OUTBOX_SERVICES:
        raise errors.InvalidArgument("service", f"must be one of {', '.join(OUTBOX_SERVICES)}")
    services = [req.service] if req.service else list(OUTBOX_SERVICES)
    replies = await asyncio.gather(*(backends.call(method, req, metadata, backend=s) for s in services))
    return pb.GetOutboxStatusResponse(
        services=[s for r in replies for s in cast(pb.GetOutboxStatusResponse, r).services]
    )
