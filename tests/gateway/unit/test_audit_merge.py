"""GET /v1/admin/audit's merge of the services' audit logs (gateway.audit), against fake services."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.audit import list_audit_entries
from gateway.routing import build_route_table
from infra import audit
from infra.pb import timestamp_to_pb
from kassa.audit.v1 import audit_service_pb2 as pb
from kernel.errors import InvalidArgument

pytestmark = pytest.mark.unit

(ROUTE,) = build_route_table().for_rpc("/kassa.audit.v1.AuditService/ListAuditEntries")
T0 = datetime(2026, 12, 1, tzinfo=UTC)


class FakeServices:
    """Each service's log (newest first by time, then id), paged like infra.audit.AuditTrail.list pages it."""

    def __init__(self, logs: dict[str, list[tuple[int, int]]]) -> None:
        # service -> [(seconds after T0, id)]
        self.logs = {
            s: sorted(
                (
                    pb.AuditEntry(service=s, id=i, create_time=timestamp_to_pb(T0 + timedelta(seconds=t)))
                    for t, i in rows
                ),
                key=lambda e: (e.create_time.ToDatetime(), e.id),
                reverse=True,
            )
            for s, rows in logs.items()
        }
        self.asked: list[str] = []

    async def call(self, method: Any, request: pb.ListAuditEntriesRequest, metadata: Any, *, backend: str) -> Any:
        self.asked.append(backend)
        rows = self.logs.get(backend, [])
        if request.page_token:
            at, entry_id = audit.decode_page_token(request.page_token)
            rows = [e for e in rows if (e.create_time.ToDatetime(tzinfo=UTC), e.id) < (at, entry_id)]
        page = rows[: request.page_size]
        more = len(rows) > request.page_size
        token = audit.page_token(page[-1].create_time.ToDatetime(tzinfo=UTC), page[-1].id) if more else ""
        return pb.ListAuditEntriesResponse(entries=page, next_page_token=token)


async def _walk(services: FakeServices, page_size: int, **fields: Any) -> list[list[tuple[str, int]]]:
    pages, token = [], ""
    while True:
        request = pb.ListAuditEntriesRequest(page_size=page_size, page_token=token, **fields)
        reply = await list_audit_entries(services, ROUTE.rpc, request, ())  # type: ignore[arg-type]
        pages.append([(e.service, e.id) for e in reply.entries])
        token = reply.next_page_token
        if not token:
            return pages


LOGS = {
    "order": [(1, 1), (5, 2), (9, 3)],
    "payment": [(2, 1), (5, 2)],
    "warehouse": [(3, 1), (3, 2), (3, 3), (4, 4)],
    "pricing": [],
    "promotion": [(10, 7)],
}


@pytest.mark.parametrize("page_size", [1, 2, 3, 4, 50])
async def test_pages_walk_every_entry_once_newest_first(page_size: int) -> None:
    pages = await _walk(FakeServices(LOGS), page_size)

    merged = [entry for page in pages for entry in page]
    assert merged == [
        ("promotion", 7), ("order", 3), ("payment", 2), ("order", 2), ("warehouse", 4), ("warehouse", 3),
        ("warehouse", 2), ("warehouse", 1), ("payment", 1), ("order", 1),
    ]  # fmt: skip
    assert all(len(page) <= page_size for page in pages)
    assert all(pages[:-1])


async def test_a_service_with_nothing_left_is_not_asked_again() -> None:
    services = FakeServices(LOGS)

    await _walk(services, 2)

    assert services.asked.count("promotion") == 1 and services.asked.count("pricing") == 1
    assert services.asked.count("warehouse") > 1


async def test_one_service_only() -> None:
    services = FakeServices(LOGS)

    pages = await _walk(services, 3, service="warehouse")

    assert pages == [[("warehouse", 4), ("warehouse", 3), ("warehouse", 2)], [("warehouse", 1)]]
    assert set(services.asked) == {"warehouse"}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"service": "sandbox"}, "service"),
        ({"page_size": -1}, "page_size"),
        ({"page_token": "bogus"}, "page_token"),
        ({"page_token": audit.page_token(T0, 1)}, "page_token"),  # a service's token, not the gateway's
    ],
)
async def test_bad_requests_name_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        await list_audit_entries(FakeServices(LOGS), ROUTE.rpc, pb.ListAuditEntriesRequest(**fields), ())  # type: ignore[arg-type]
    assert err.value.field == field


async def test_a_token_of_one_service_listing_does_not_continue_another() -> None:
    services = FakeServices(LOGS)
    first = await list_audit_entries(services, ROUTE.rpc, pb.ListAuditEntriesRequest(page_size=1), ())  # type: ignore[arg-type]

    with pytest.raises(InvalidArgument):
        await list_audit_entries(
            services,  # type: ignore[arg-type]
            ROUTE.rpc,
            pb.ListAuditEntriesRequest(page_size=1, service="order", page_token=first.next_page_token),
            (),
        )
