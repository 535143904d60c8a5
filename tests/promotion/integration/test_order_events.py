"""OrderCancelled / OrderPaymentFailed give the order's promotion uses back (DESIGN.md §3, §4.5).

Reserved uses are released, confirmed ones returned (counters, the customer's count included), once per
event; a concurrent ConfirmPromotionUsage of the same session either wins (then its use is returned)
or is refused. A reserved use has no TTL: it outlives the async payment window.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import sqlalchemy as sa
from helpers import bearer, drained, grpc_outcome, order_event, unique
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.config import Settings
from infra.events import connect, subject
from kassa.promotion.v1 import promotion_service_pb2 as pb
from kassa.promotion.v1.promotion_service_pb2_grpc import PromotionServiceStub
from promotion.biz.give_back import GiveBackOrderUsage
from promotion.data.repositories import SqlUnitOfWork
from promotion.data.tables import outbox, promotion_usages
from promotion.worker.order_events import OrderEventHandler
from tests.promotion.integration.test_promotion_service import counts, create, reserve_request

pytestmark = pytest.mark.integration


async def usage_statuses(db: AsyncEngine, ref: str) -> set[str]:
    async with db.connect() as conn:
        rows = await conn.execute(sa.select(promotion_usages.c.status).where(promotion_usages.c.reservation_ref == ref))
        return {r.status for r in rows}


async def outbox_events(db: AsyncEngine, ref: str, event_type: str) -> list[dict]:
    async with db.connect() as conn:
        rows = await conn.execute(
            sa.select(outbox.c.payload).where(outbox.c.aggregate_id == ref, outbox.c.event_type == event_type)
        )
        return [r.payload for r in rows]


async def test_a_cancelled_order_returns_its_confirmed_use_once(
    promotion_stub: PromotionServiceStub, admin_token: str, service_token: str, promotion_db: AsyncEngine
) -> None:
    promo = await create(promotion_stub, admin_token, usage_limit=1, usage_limit_per_customer=1)
    md = bearer(service_token)
    customer, ref = unique("cust"), unique("ref")
    await promotion_stub.ReservePromotionUsage(reserve_request(ref, [promo.code], customer), metadata=md)
    await promotion_stub.ConfirmPromotionUsage(pb.ConfirmPromotionUsageRequest(reservation_ref=ref), metadata=md)
    used = await counts(promotion_db, promo.code)
    handler = OrderEventHandler(GiveBackOrderUsage(SqlUnitOfWork(promotion_db)))
    cancelled = order_event(ref)

    first = await handler(cancelled)
    redelivered = await handler(cancelled)
    payment_failed_too = await handler(order_event(ref, "OrderPaymentFailed"))
    after = await counts(promotion_db, promo.code)
    confirm_after = await grpc_outcome(
        promotion_stub.ConfirmPromotionUsage(pb.ConfirmPromotionUsageRequest(reservation_ref=ref), metadata=md)
    )
    release_after = await grpc_outcome(
        promotion_stub.ReleasePromotionUsage(pb.ReleasePromotionUsageRequest(reservation_ref=ref), metadata=md)
    )
    reserve_same_ref = await grpc_outcome(
        promotion_stub.ReservePromotionUsage(reserve_request(ref, [promo.code], customer), metadata=md)
    )
    # Both the global and the customer's limit (1 each) have room again: the same customer may use it anew.
    again = await grpc_outcome(
        promotion_stub.ReservePromotionUsage(reserve_request(unique("ref"), [promo.code], customer), metadata=md)
    )

    assert used == (1, 0)
    assert first == "released 0 use(s), returned 1 use(s)"
    assert (redelivered, payment_failed_too) == ("already handled", "nothing reserved or used")
    assert after == (0, 0)
    assert (confirm_after, release_after) == ("FAILED_PRECONDITION:PROMOTION_INVALID", "OK")
    assert reserve_same_ref == "FAILED_PRECONDITION:SESSION_NOT_OPEN"
    assert again == "OK"
    assert await usage_statuses(promotion_db, ref) == {"returned"}
    [event] = await outbox_events(promotion_db, ref, "PromotionUsageReturned")
    assert event["data"]["customer_id"] == customer
    assert [p["code"] for p in event["data"]["promotions"]] == [promo.code]


async def test_a_failed_payment_releases_the_reserved_use(
    promotion_stub: PromotionServiceStub, admin_token: str, service_token: str, promotion_db: AsyncEngine
) -> None:
    promo = await create(promotion_stub, admin_token, usage_limit=5)
    md = bearer(service_token)
    ref = unique("ref")
    await promotion_stub.ReservePromotionUsage(reserve_request(ref, [promo.code]), metadata=md)

    outcome = await OrderEventHandler(GiveBackOrderUsage(SqlUnitOfWork(promotion_db)))(
        order_event(ref, "OrderPaymentFailed")
    )
    confirm_after = await grpc_outcome(
        promotion_stub.ConfirmPromotionUsage(pb.ConfirmPromotionUsageRequest(reservation_ref=ref), metadata=md)
    )

    assert outcome == "released 1 use(s), returned 0 use(s)"
    assert confirm_after == "FAILED_PRECONDITION:PROMOTION_INVALID"
    assert await counts(promotion_db, promo.code) == (0, 0)
    assert await usage_statuses(promotion_db, ref) == {"released"}
    assert len(await outbox_events(promotion_db, ref, "PromotionUsageReleased")) == 1


async def test_confirm_racing_the_cancellation_never_both_apply(
    promotion_stub: PromotionServiceStub, admin_token: str, service_token: str, promotion_db: AsyncEngine
) -> None:
    promo = await create(promotion_stub, admin_token)
    md = bearer(service_token)
    refs = [unique("race") for _ in range(12)]
    for ref in refs:
        await promotion_stub.ReservePromotionUsage(reserve_request(ref, [promo.code], unique("cust")), metadata=md)
    handler = OrderEventHandler(GiveBackOrderUsage(SqlUnitOfWork(promotion_db)))

    async def race(ref: str) -> tuple[str, str]:
        confirm = promotion_stub.ConfirmPromotionUsage(
            pb.ConfirmPromotionUsageRequest(reservation_ref=ref), metadata=md
        )
        confirmed, given = await asyncio.gather(grpc_outcome(confirm), handler(order_event(ref)))
        return confirmed, given

    outcomes = await asyncio.gather(*(race(ref) for ref in refs))

    for ref, (confirmed, given) in zip(refs, outcomes, strict=True):
        if confirmed == "OK":
            assert given == "released 0 use(s), returned 1 use(s)", ref
            assert await usage_statuses(promotion_db, ref) == {"returned"}
        else:
            assert (confirmed, given) == (
                "FAILED_PRECONDITION:PROMOTION_INVALID",
                "released 1 use(s), returned 0 use(s)",
            )
            assert await usage_statuses(promotion_db, ref) == {"released"}
    assert await counts(promotion_db, promo.code) == (0, 0)


async def test_a_reserved_use_outlives_the_payment_window(
    promotion_stub: PromotionServiceStub,
    admin_token: str,
    service_token: str,
    promotion_db: AsyncEngine,
    settings: Settings,
) -> None:
    """Nothing expires a reservation by age: reserved longer ago than the payment window, it still confirms."""
    promo = await create(promotion_stub, admin_token, usage_limit=1)
    md = bearer(service_token)
    ref = unique("ref")
    await promotion_stub.ReservePromotionUsage(reserve_request(ref, [promo.code]), metadata=md)
    async with promotion_db.begin() as conn:
        await conn.execute(
            promotion_usages.update()
            .where(promotion_usages.c.reservation_ref == ref)
            .values(
                reserved_at=sa.func.now()
                - sa.func.make_interval(0, 0, 0, 0, 0, 0, settings.payment_window_seconds + 60)
            )
        )

    confirmed = await promotion_stub.ConfirmPromotionUsage(
        pb.ConfirmPromotionUsageRequest(reservation_ref=ref), metadata=md
    )

    assert confirmed.confirmed == 1
    assert await counts(promotion_db, promo.code) == (1, 0)


async def test_the_service_consumes_order_events_from_jetstream(
    promotion_stub: PromotionServiceStub,
    admin_token: str,
    service_token: str,
    promotion_db: AsyncEngine,
    settings: Settings,
) -> None:
    """Wired in bootstrap (the session's server runs its workers): a published OrderCancelled, published
    twice as a republish past the dedup window would be, returns the use once."""
    promo = await create(promotion_stub, admin_token)
    md = bearer(service_token)
    ref = unique("ref")
    await promotion_stub.ReservePromotionUsage(reserve_request(ref, [promo.code]), metadata=md)
    await promotion_stub.ConfirmPromotionUsage(pb.ConfirmPromotionUsageRequest(reservation_ref=ref), metadata=md)
    event = order_event(ref)
    envelope = {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "aggregate_id": event.aggregate_id,
        "occurred_at": "2025-01-01T00:00:00+00:00",
        "data": event.data,
    }
    assert settings.nats_url
    nc, js = await connect(settings.nats_url, "promotion-tests")
    try:
        for msg_id in (event.event_id, unique("republish")):
            await js.publish(
                subject("order", "OrderCancelled"), json.dumps(envelope).encode(), headers={"Nats-Msg-Id": msg_id}
            )
        for _ in range(200):  # bounded poll: both deliveries handled and acked
            done = await drained(js, "promotion-order-events")
            if done and await usage_statuses(promotion_db, ref) == {"returned"}:
                break
            await asyncio.sleep(0.05)
    finally:
        await nc.close()

    assert await usage_statuses(promotion_db, ref) == {"returned"}
    assert done
    assert await counts(promotion_db, promo.code) == (0, 0)
    assert len(await outbox_events(promotion_db, ref, "PromotionUsageReturned")) == 1
