"""kassa.checkout.v1.CheckoutAdminService: the DLQ, stuck sessions and the funnel, for admins.

Validates and converts; the use cases are checkout.biz.checkout.operate. Every RPC needs the admin role;
the actions (retry, park, replay, resolve) are audited by the service's AuditTrail.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import struct_pb2

from checkout.biz.checkout.operate import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    DeadLetters,
    FunnelReport,
    StuckSessions,
    decode_page_token,
)
from checkout.model.compensation import CompensationFilter, CompensationStatus, FailedCompensation, Operation
from infra.auth import require_admin
from infra.pb import checked_datetime, timestamp_to_pb
from infra.pii import redact
from kassa.checkout.v1 import checkout_admin_service_pb2 as pb
from kassa.checkout.v1 import checkout_admin_service_pb2_grpc as pb_grpc
from kernel.errors import InvalidArgument
from kernel.validation import check_uuid

__all__ = ["READS", "CheckoutAdminServiceServicer", "public_payload"]

# The RPCs that change nothing (not audited).
READS = ("ListFailedCompensations", "GetFailedCompensation", "ListStuckSessions", "GetFunnel")

_STATUS_TO_PB = {
    CompensationStatus.PENDING: pb.COMPENSATION_STATUS_PENDING,
    CompensationStatus.DONE: pb.COMPENSATION_STATUS_DONE,
    CompensationStatus.DEAD: pb.COMPENSATION_STATUS_DEAD,
    CompensationStatus.PARKED: pb.COMPENSATION_STATUS_PARKED,
}
_STATUS_FROM_PB = {v: k for k, v in _STATUS_TO_PB.items()}
# Payload keys that could hold personal data: never shown (today's payloads hold none; a future one might).
_PERSONAL = frozenset(
    {"email", "customer_email", "name", "phone", "address", "shipping_address", "billing_address", "notes"}
)


def public_payload(value: Any) -> Any:
    """A compensation's payload as an operator sees it: personal fields dropped, free text redacted."""
    if isinstance(value, dict):
        return {k: public_payload(v) for k, v in value.items() if k not in _PERSONAL}
    if isinstance(value, list):
        return [public_payload(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value


def entry_to_pb(entry: FailedCompensation, *, payload: bool) -> pb.FailedCompensation:
    out = pb.FailedCompensation(
        id=entry.id,
        session_id=entry.session_id,
        operation=entry.operation.value,
        status=_STATUS_TO_PB.get(CompensationStatus(entry.status), pb.COMPENSATION_STATUS_UNSPECIFIED),
        attempts=entry.attempts,
        last_error=redact(entry.last_error),
        create_time=timestamp_to_pb(entry.created_at),
        update_time=timestamp_to_pb(entry.updated_at),
    )
    if entry.status == CompensationStatus.PENDING and entry.next_attempt_at is not None:
        out.next_attempt_time.CopyFrom(timestamp_to_pb(entry.next_attempt_at))
    if payload:
        struct = struct_pb2.Struct()
        struct.update(public_payload(entry.payload))
        out.payload.CopyFrom(struct)
    return out


def _page_size(value: int) -> int:
    if value < 0:
        raise InvalidArgument("page_size", "must not be negative")
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


class CheckoutAdminServiceServicer(pb_grpc.CheckoutAdminServiceServicer):
    def __init__(self, dlq: DeadLetters, stuck: StuckSessions, funnel: FunnelReport) -> None:
        self._dlq = dlq
        self._stuck = stuck
        self._funnel = funnel

    async def ListFailedCompensations(
        self, request: pb.ListFailedCompensationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListFailedCompensationsResponse:
        require_admin()
        status = None
        if request.status != pb.COMPENSATION_STATUS_UNSPECIFIED:
            if request.status not in _STATUS_FROM_PB:
                raise InvalidArgument("status", "is not a CompensationStatus")
            status = _STATUS_FROM_PB[request.status]
        operation = None
        if request.operation:
            try:
                operation = Operation(request.operation)
            except ValueError:
                raise InvalidArgument("operation", f"must be one of {', '.join(o.value for o in Operation)}") from None
        where = CompensationFilter(
            status=status,
            operation=operation,
            session_id=check_uuid("session_id", request.session_id) if request.session_id else "",
            after=decode_page_token(request.page_token) if request.page_token else None,
        )
        entries, token = await self._dlq.list(where, _page_size(request.page_size))
        return pb.ListFailedCompensationsResponse(
            entries=[entry_to_pb(e, payload=False) for e in entries], next_page_token=token
        )

    async def GetFailedCompensation(
        self, request: pb.GetFailedCompensationRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetFailedCompensationResponse:
        require_admin()
        entry = await self._dlq.get(check_uuid("id", request.id))
        return pb.GetFailedCompensationResponse(entry=entry_to_pb(entry, payload=True))

    async def RetryFailedCompensation(
        self, request: pb.RetryFailedCompensationRequest, context: grpc.aio.ServicerContext
    ) -> pb.RetryFailedCompensationResponse:
        require_admin()
        entry, attempt = await self._dlq.retry(check_uuid("id", request.id))
        return pb.RetryFailedCompensationResponse(
            entry=entry_to_pb(entry, payload=True), succeeded=attempt.succeeded, error=redact(attempt.error)
        )

    async def ParkFailedCompensation(
        self, request: pb.ParkFailedCompensationRequest, context: grpc.aio.ServicerContext
    ) -> pb.ParkFailedCompensationResponse:
        require_admin()
        entry = await self._dlq.park(check_uuid("id", request.id))
        return pb.ParkFailedCompensationResponse(entry=entry_to_pb(entry, payload=True))

    async def ReplayFailedCompensation(
        self, request: pb.ReplayFailedCompensationRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplayFailedCompensationResponse:
        require_admin()
        entry, attempt = await self._dlq.replay(check_uuid("id", request.id))
        return pb.ReplayFailedCompensationResponse(
            entry=entry_to_pb(entry, payload=True), succeeded=attempt.succeeded, error=redact(attempt.error)
        )

    async def ListStuckSessions(
        self, request: pb.ListStuckSessionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListStuckSessionsResponse:
        require_admin()
        sessions = await self._stuck.list(_page_size(request.page_size))
        reply = pb.ListStuckSessionsResponse(lease_seconds=int(self._stuck.lease_seconds))
        now = datetime.now(UTC)
        for s in sessions:
            started = s.confirm_started_at
            item = reply.sessions.add(
                session_id=s.session_id,
                saga_step=s.saga_step.value if s.saga_step else "",
                age_seconds=int((now - started).total_seconds()) if started else 0,
                saga_attempt=s.saga_attempt,
                order_id=s.order_id or s.saga_state.order_id or "",
            )
            if started is not None:
                item.last_progress_time.CopyFrom(timestamp_to_pb(started))
        return reply

    async def ResolveStuckSession(
        self, request: pb.ResolveStuckSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResolveStuckSessionResponse:
        require_admin()
        done = await self._stuck.resolve(check_uuid("session_id", request.session_id))
        s = done.session
        return pb.ResolveStuckSessionResponse(
            session_id=s.session_id,
            outcome=done.outcome,
            session_status=s.status.value,
            order_id=s.order_id or s.saga_state.order_id or "",
            last_error=redact(s.last_error),
        )

    async def GetFunnel(self, request: pb.GetFunnelRequest, context: grpc.aio.ServicerContext) -> pb.GetFunnelResponse:
        require_admin()
        start = checked_datetime("start_time", request.start_time) if request.HasField("start_time") else None
        end = checked_datetime("end_time", request.end_time) if request.HasField("end_time") else None
        f = await self._funnel.window(start, end)
        return pb.GetFunnelResponse(
            start_time=timestamp_to_pb(f.start),
            end_time=timestamp_to_pb(f.end),
            carts_created=f.carts_created,
            checkouts_started=f.checkouts_started,
            checkouts_confirmed=f.checkouts_confirmed,
            checkouts_failed=f.checkouts_failed,
            failures_by_reason=[
                pb.FailureCount(reason=r, count=n)
                for r, n in sorted(f.failures_by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
            failure_rate=f.failure_rate,
        )
