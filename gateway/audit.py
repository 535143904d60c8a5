"""GET /v1/admin/audit: the audit logs of every service, merged newest first.

Each audited service (``infra.audit.AUDITED_SERVICES``) serves ``kassa.audit.v1.AuditService`` for its own
log, so the one route fans out: the same request (filters, page size) goes to each service, with that
service's own page token, and the answers are merged by time (then service, then id), keeping the first
``page_size``. The gateway's page token carries every service's position: where the merge stopped in its
entries, or that it has none left. The positions are exact (each service pages by its own keyset), so a
page never repeats or skips an entry of one service, whatever the others hold.

An error from any service is the answer (a partial log would read as a complete one).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Sequence
from datetime import UTC
from typing import cast

from google.protobuf import message

from gateway.backends import Backends, Metadata
from gateway.routing import RpcMethod
from infra import audit
from kassa.audit.v1 import audit_service_pb2 as pb
from kernel import errors

__all__ = ["AUDIT_BACKEND", "list_audit_entries"]

# What gateway.routing.rpc_method names the backend of kassa.audit.v1 (its package's <svc>).
AUDIT_BACKEND = "audit"
_DONE = None


def _decode(token: str, services: Sequence[str]) -> dict[str, str | None]:
    """Each service's page token ("" from its start), or None when it has nothing left."""
    if not token:
        return dict.fromkeys(services, "")
    try:
        if len(token) > 4096:
            raise ValueError("too long")
        cursors = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(cursors, dict) or sorted(cursors) != sorted(services):
            raise ValueError("not this listing's services")
        if not all(c is None or isinstance(c, str) for c in cursors.values()):
            raise ValueError("not a cursor")
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise errors.InvalidArgument("page_token", "is not a page token of this listing") from exc
    return cast(dict[str, str | None], cursors)


def _encode(cursors: dict[str, str | None]) -> str:
    if all(c is _DONE for c in cursors.values()):
        return ""
    raw = json.dumps(cursors, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


async def list_audit_entries(
    backends: Backends, method: RpcMethod, request: message.Message, metadata: Metadata
) -> pb.ListAuditEntriesResponse:
    """Ask every audited service (or only ``request.service``) and merge their answers into one page."""
    req = cast(pb.ListAuditEntriesRequest, request)
    if req.service and req.service not in audit.AUDITED_SERVICES:
        raise errors.InvalidArgument("service", f"must be one of {', '.join(audit.AUDITED_SERVICES)}")
    if req.page_size < 0:
        raise errors.InvalidArgument("page_size", "must not be negative")
    services = [req.service] if req.service else list(audit.AUDITED_SERVICES)
    page_size = min(req.page_size or audit.DEFAULT_PAGE_SIZE, audit.MAX_PAGE_SIZE)
    cursors = _decode(req.page_token, services)
    asked = [s for s in services if cursors[s] is not _DONE]

    def sub_request(service: str) -> pb.ListAuditEntriesRequest:
        sub = pb.ListAuditEntriesRequest()
        sub.CopyFrom(req)
        sub.page_size = page_size
        sub.page_token = cursors[service] or ""
        return sub

    replies = await asyncio.gather(*(backends.call(method, sub_request(s), metadata, backend=s) for s in asked))
    answers = dict(zip(asked, (cast(pb.ListAuditEntriesResponse, r) for r in replies), strict=True))
    page = audit.entries_sorted([e for r in answers.values() for e in r.entries])[:page_size]
    for service, answer in answers.items():
        taken = [e for e in page if e.service == service]
        if len(taken) == len(answer.entries) and not answer.next_page_token:
            cursors[service] = _DONE
        elif taken:
            last = taken[-1]
            cursors[service] = audit.page_token(last.create_time.ToDatetime(tzinfo=UTC), last.id)
    return pb.ListAuditEntriesResponse(entries=page, next_page_token=_encode(cursors))
