"""OrderCancelled / OrderPaymentFailed give the order's units back (DESIGN.md §3 cancellation, §4.4, §4.5).

Held units are released, sold units restocked (once), a redelivery changes nothing, and a concurrent
ConfirmReservations of the same session either wins (then its units are restocked) or is refused.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import sqlalchemy as sa
from helpers import bearer, drained, grpc_outcome, order_event, unique

from infra.consumer import Event
from infra.events import connect, ensure_streams, subject
from infra.runner import running_service
from kassa.warehouse.v1 import inventory_pb2
from kassa.warehouse.v1 import inventory_service_pb2 as pb
from warehouse.biz.reconcile_stock import ReconcileStock
from warehouse.biz.return_order_stock import ReturnOrderStock
from warehouse.bootstrap import bootstrap
from warehouse.data.repositories import SqlUnitOfWork
from warehouse.data.tables import inbox, outbox, reservations
from warehouse.model.reconciliation import ReconcileStatus
from warehouse.worker.order_events import OrderEventHandler

pytestmark = pytest.mark.integration


async def statuses(engine, ref: str) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(reservations.c.status).where(reservations.c.reservation_ref == ref))
        return {r.status for r in rows}


async def sold_units(engine, sku: str) -> int:
    """Units confirmed sold (restocked ones are not), the term of DESIGN.md §4.4's conservation."""
    query = sa.select(sa.func.coalesce(sa.func.sum(reservations.c.quantity), 0)).where(
        reservations.c.sku == sku, reservations.c.status == "confirmed"
    )
    async with engine.connect() as conn:
        return int(await conn.scalar(query))


async def restocked_events(engine, ref: str) -> list[dict]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(outbox.c.subject, outbox.c.payload).where(
                outbox.c.aggregate_id == ref, outbox.c.event_type == "StockRestocked"
            )
        )
        return [{"subject": r.subject, **r.payload} for r in rows]


async def test_cancelled_order_restocks_sold_units_once(inventory, seed, service_token, engine) -> None:
    w1, w2 = await seed.warehouse(), await seed.warehouse()
    sku = unique("sku")
    await seed.stock([(sku, w1, 3), (sku, w2, 4)])
    ref = unique("ref")
    md = bearer(service_token)
    await inventory.reserve(service_token, ref, [(sku, 5)])  # split across both warehouses
    confirmed = await inventory.ConfirmReservations(pb.ConfirmReservationsRequest(reservation_ref=ref), metadata=md)
    sold = await inventory.levels(service_token, sku)
    handler = OrderEventHandler(ReturnOrderStock(SqlUnitOfWork(engine)))
    cancelled = order_event(ref)

    first = await handler(cancelled)
    redelivered = await handler(cancelled)
    payment_failed_too = await handler(order_event(ref, "OrderPaymentFailed"))
    release_after = await grpc_outcome(
        inventory.ReleaseReservations(pb.ReleaseReservationsRequest(reservation_ref=ref), metadata=md)
    )
    confirm_after = await grpc_outcome(
        inventory.ConfirmReservations(pb.ConfirmReservationsRequest(reservation_ref=ref), metadata=md)
    )
    reserve_after = await grpc_outcome(inventory.reserve(service_token, ref, [(sku, 1)]))

    assert sum(on_hand for on_hand, _ in sold.values()) == 2
    assert first == "released 0 unit(s), restocked 5 unit(s)"
    assert (redelivered, payment_failed_too) == ("already handled", "nothing held or sold")
    assert (release_after, confirm_after) == ("OK", "FAILED_PRECONDITION:SESSION_EXPIRED")
    assert reserve_after == "FAILED_PRECONDITION:SESSION_NOT_OPEN"
    assert await inventory.levels(service_token, sku) == {(sku, w1): (3, 0), (sku, w2): (4, 0)}
    assert await statuses(engine, ref) == {"restocked"}
    assert 3 + 4 + await sold_units(engine, sku) == 7  # initial on_hand == on_hand now + units sold
    [event] = await restocked_events(engine, ref)
    assert event["subject"] == "kassa.warehouse.StockRestocked"
    assert event["data"]["order_id"] == cancelled.aggregate_id and event["data"]["cause"] == "OrderCancelled"
    assert sorted((ln["warehouse_id"], ln["quantity"]) for ln in event["data"]["lines"]) == sorted(
        (r.warehouse_id, r.quantity) for r in confirmed.reservations
    )
    report = await ReconcileStock(SqlUnitOfWork(engine))(skus=[sku])
    assert report.status is ReconcileStatus.CLEAN


async def test_payment_failed_releases_held_units(inventory, seed, service_token, engine) -> None:
    wh = await seed.warehouse()
    sku = unique("sku")
    await seed.stock([(sku, wh, 5)])
    ref = unique("ref")
    await inventory.reserve(service_token, ref, [(sku, 2)])
    handler = OrderEventHandler(ReturnOrderStock(SqlUnitOfWork(engine)))

    outcome = await handler(order_event(ref, "OrderPaymentFailed"))
    confirm_after = await grpc_outcome(
        inventory.ConfirmReservations(
            pb.ConfirmReservationsRequest(reservation_ref=ref), metadata=bearer(service_token)
        )
    )

    assert outcome == "released 2 unit(s), restocked 0 unit(s)"
    assert confirm_after == "FAILED_PRECONDITION:SESSION_EXPIRED"
    assert await inventory.levels(service_token, sku) == {(sku, wh): (5, 0)}
    assert await statuses(engine, ref) == {"released"}
    assert await restocked_events(engine, ref) == []


async def test_event_without_session_or_reservations_changes_nothing(engine) -> None:
    handler = OrderEventHandler(ReturnOrderStock(SqlUnitOfWork(engine)))
    unknown = order_event(unique("nobody"))
    no_session = Event(str(uuid.uuid4()), "OrderCancelled", unique("order"), {"order_id": "x"})

    assert await handler(unknown) == "nothing held or sold"
    assert await handler(no_session) == "no checkout_session_id"
    async with engine.connect() as conn:
        claimed = await conn.scalar(
            sa.select(sa.func.count()).where(
                inbox.c.consumer == "warehouse-order-events", inbox.c.event_id == unknown.event_id
            )
        )
    assert claimed == 1


async def test_confirm_racing_the_cancellation_never_both_apply(inventory, seed, service_token, engine) -> None:
    wh = await seed.warehouse()
    sku = unique("sku")
    refs = [unique("race") for _ in range(12)]
    await seed.stock([(sku, wh, 2 * len(refs))])
    for ref in refs:
        await inventory.reserve(service_token, ref, [(sku, 2)])
    handler = OrderEventHandler(ReturnOrderStock(SqlUnitOfWork(engine)))
    md = bearer(service_token)

    async def race(ref: str) -> tuple[str, str]:
        confirmed, returned = await asyncio.gather(
            grpc_outcome(
                inventory.ConfirmReservations(pb.ConfirmReservationsRequest(reservation_ref=ref), metadata=md)
            ),
            handler(order_event(ref)),
        )
        return confirmed, returned

    outcomes = await asyncio.gather(*(race(ref) for ref in refs))

    for ref, (confirmed, returned) in zip(refs, outcomes, strict=True):
        if confirmed == "OK":  # confirm first, then the cancellation restocked what it sold
            assert returned == "released 0 unit(s), restocked 2 unit(s)", ref
            assert await statuses(engine, ref) == {"restocked"}
        else:  # the cancellation first: confirm refused, nothing sold
            assert (confirmed, returned) == (
                "FAILED_PRECONDITION:SESSION_EXPIRED",
                "released 2 unit(s), restocked 0 unit(s)",
            )
            assert await statuses(engine, ref) == {"released"}
    assert await inventory.levels(service_token, sku) == {(sku, wh): (2 * len(refs), 0)}
    assert await sold_units(engine, sku) == 0


async def test_service_consumes_order_events_from_jetstream(inventory, seed, service_token, engine, settings) -> None:
    """Wired in bootstrap: a published OrderCancelled (twice, as a republish would) restocks once."""
    wh = await seed.warehouse()
    sku = unique("sku")
    await seed.stock([(sku, wh, 4)])
    ref = unique("ref")
    await inventory.reserve(service_token, ref, [(sku, 3)])
    await inventory.ConfirmReservations(
        pb.ConfirmReservationsRequest(reservation_ref=ref), metadata=bearer(service_token)
    )
    event = order_event(ref)
    envelope = {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "aggregate_id": event.aggregate_id,
        "occurred_at": "2025-01-01T00:00:00+00:00",
        "data": event.data,
    }
    assert settings.nats_url
    nc, js = await connect(settings.nats_url, "warehouse-tests")
    try:
        await ensure_streams(js, ["order"])
        async with running_service(bootstrap, settings, "127.0.0.1:0"):
            for msg_id in (event.event_id, unique("republish")):  # a republish past the dedup window
                await js.publish(
                    subject("order", "OrderCancelled"),
                    json.dumps(envelope).encode(),
                    headers={"Nats-Msg-Id": msg_id},
                )
            for _ in range(200):  # bounded poll: both deliveries handled and acked
                done = await drained(js, "warehouse-order-events")
                if done and await statuses(engine, ref) == {"restocked"}:
                    break
                await asyncio.sleep(0.05)
    finally:
        await nc.close()

    assert await statuses(engine, ref) == {"restocked"}
    assert done
    assert await inventory.levels(service_token, sku) == {(sku, wh): (4, 0)}
    assert len(await restocked_events(engine, ref)) == 1


async def test_restocked_reservations_read_as_released(inventory, seed, service_token, engine) -> None:
    wh = await seed.warehouse()
    sku = unique("sku")
    await seed.stock([(sku, wh, 2)])
    ref = unique("ref")
    md = bearer(service_token)
    await inventory.reserve(service_token, ref, [(sku, 1)])
    await inventory.ConfirmReservations(pb.ConfirmReservationsRequest(reservation_ref=ref), metadata=md)
    await OrderEventHandler(ReturnOrderStock(SqlUnitOfWork(engine)))(order_event(ref))

    got = await inventory.BatchGetReservations(pb.BatchGetReservationsRequest(reservation_ref=ref), metadata=md)

    assert [r.status for r in got.reservations] == [inventory_pb2.RESERVATION_STATUS_RELEASED]
