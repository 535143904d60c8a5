"""The promotion service's audit log: CreatePromotion by an admin, recorded with its change."""

from __future__ import annotations

import grpc
import pytest
import sqlalchemy as sa
from audit_support import REFUSED, SUCCEEDED, assert_append_only, entries_of, list_status, new_admin
from helpers import bearer, unique

from kassa.audit.v1 import audit_service_pb2 as audit_pb
from kassa.audit.v1.audit_service_pb2_grpc import AuditServiceStub
from kassa.promotion.v1 import promotion_pb2 as ppb
from kassa.promotion.v1 import promotion_service_pb2 as pb
from promotion.data.tables import promotions

pytestmark = pytest.mark.integration

CREATE = "kassa.promotion.v1.PromotionService.CreatePromotion"


def _draft(code: str) -> ppb.Promotion:
    return ppb.Promotion(
        code=code, name="Spring sale", type=ppb.PROMOTION_TYPE_PERCENTAGE, percent_off=15, combinable=True
    )


async def test_create_promotion_is_recorded_with_the_change(
    promotion_stub, promotion_channel, promotion_db, settings
) -> None:
    actor, token = new_admin(settings)
    code = unique("SPRING").upper()

    await promotion_stub.CreatePromotion(pb.CreatePromotionRequest(promotion=_draft(code)), metadata=bearer(token))

    [entry] = await entries_of(promotion_channel, token, actor)
    assert (entry.service, entry.actor, entry.action, entry.outcome) == ("promotion", actor, CREATE, SUCCEEDED)
    assert list(entry.targets) == [f"promotions/{code}"]
    assert entry.request["promotion"]["type"] == "PROMOTION_TYPE_PERCENTAGE"
    assert entry.request["promotion"]["percent_off"] == 15
    async with promotion_db.connect() as conn:
        created_at = (
            await conn.execute(sa.select(promotions.c.created_at).where(promotions.c.code == code))
        ).scalar_one()
    assert entry.create_time.ToDatetime().replace(tzinfo=created_at.tzinfo) == created_at


async def test_a_duplicate_code_is_recorded_as_refused(promotion_stub, promotion_channel, settings) -> None:
    actor, token = new_admin(settings)
    code = unique("TWICE").upper()
    await promotion_stub.CreatePromotion(pb.CreatePromotionRequest(promotion=_draft(code)), metadata=bearer(token))

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await promotion_stub.CreatePromotion(pb.CreatePromotionRequest(promotion=_draft(code)), metadata=bearer(token))

    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    second, first = await entries_of(promotion_channel, token, actor)
    assert (first.outcome, second.outcome, second.reason) == (SUCCEEDED, REFUSED, "PROMOTION_INVALID")
    assert second.action == CREATE and second.id > first.id


async def test_filters_and_pages(promotion_stub, promotion_channel, settings) -> None:
    actor, token = new_admin(settings)
    codes = [unique("PAGE").upper() for _ in range(3)]
    for code in codes:
        await promotion_stub.CreatePromotion(pb.CreatePromotionRequest(promotion=_draft(code)), metadata=bearer(token))

    stub_pages = []
    page_token = ""
    while True:
        reply = await AuditServiceStub(promotion_channel).ListAuditEntries(
            audit_pb.ListAuditEntriesRequest(actor=actor, page_size=2, page_token=page_token), metadata=bearer(token)
        )
        stub_pages.append([e.targets[0] for e in reply.entries])
        page_token = reply.next_page_token
        if not page_token:
            break

    assert stub_pages == [[f"promotions/{codes[2]}", f"promotions/{codes[1]}"], [f"promotions/{codes[0]}"]]
    assert len(await entries_of(promotion_channel, token, actor, action="CreatePromotion")) == 3
    assert len(await entries_of(promotion_channel, token, actor, action=CREATE)) == 3
    assert await entries_of(promotion_channel, token, actor, action="ReservePromotionUsage") == []
    assert len(await entries_of(promotion_channel, token, actor, target=f"promotions/{codes[1]}")) == 1
    assert await entries_of(promotion_channel, token, actor, service="pricing") == []


async def test_only_admins_read_the_log(promotion_channel, customer_token, service_token, admin_token) -> None:
    assert await list_status(promotion_channel, customer_token) == grpc.StatusCode.PERMISSION_DENIED
    assert await list_status(promotion_channel, service_token) == grpc.StatusCode.PERMISSION_DENIED
    assert await list_status(promotion_channel, admin_token) == grpc.StatusCode.OK


async def test_the_database_refuses_to_change_an_entry(promotion_stub, promotion_db, settings) -> None:
    _, token = new_admin(settings)
    code = unique("KEEP").upper()
    await promotion_stub.CreatePromotion(pb.CreatePromotionRequest(promotion=_draft(code)), metadata=bearer(token))

    await assert_append_only(promotion_db, "promotion")
