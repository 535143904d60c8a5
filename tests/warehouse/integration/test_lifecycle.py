from __future__ import annotations

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf.duration_pb2 import Duration
from helpers import bearer, unique

from infra.grpc_errors import error_info
from kassa.warehouse.v1 import inventory_pb2
from kassa.warehouse.v1 import inventory_service_pb2 as pb
from warehouse.data.tables import outbox

pytestmark = pytest.mark.integration

ACTIVE = inventory_pb2.RESERVATION_STATUS_ACTIVE
CONFIRMED = inventory_pb2.RESERVATION_STATUS_CONFIRMED
RELEASED = inventory_pb2.RESERVATION_STATUS_RELEASED


async def confirm(inventory, token: str, ref: str) -> pb.ConfirmReservationsResponse:
    return await inventory.ConfirmReservations(
        pb.ConfirmReservationsRequest(reservation_ref=ref), metadata=bearer(token)
    )


async def release(inventory, token: str, ref: str) -> pb.ReleaseReservationsResponse:
    return await inventory.ReleaseReservations(
        pb.ReleaseReservationsRequest(reservation_ref=ref, reason="test"), metadata=bearer(token)
    )


async def events(engine, ref: str, event_type: str) -> list[dict]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(outbox.c.subject, outbox.c.payload).where(
                outbox.c.aggregate_id == ref, outbox.c.event_type == event_type
            )
        )
        return [{"subject": r.subject, **r.payload} for r in rows]


async def test_release_and_confirm_are_idempotent_and_conserve_stock(inventory, seed, service_token, engine) -> None:
    w1, w2 = await seed.warehouse(), await seed.warehouse()
    sku = unique("sku")
    await seed.stock([(sku, w1, 6), (sku, w2, 4)])
    sold, dropped, held = unique("sold"), unique("dropped"), unique("held")
    await inventory.reserve(service_token, sold, [(sku, 7)])  # split across both warehouses
    await inventory.reserve(service_token, dropped, [(sku, 2)])
    await inventory.reserve(service_token, held, [(sku, 1)])

    first_confirm = await confirm(inventory, service_token, sold)
    second_confirm = await confirm(inventory, service_token, sold)
    first_release = await release(inventory, service_token, dropped)
    second_release = await release(inventory, service_token, dropped)
    release_after_confirm = await release(inventory, service_token, sold)

    assert {r.status for r in first_confirm.reservations} == {CONFIRMED}
    assert sum(r.quantity for r in first_confirm.reservations) == 7
    assert second_confirm == first_confirm
    assert list(release_after_confirm.reservations) == list(first_confirm.reservations)
    assert {r.status for r in first_release.reservations} == {RELEASED}
    assert second_release == first_release
    stock = await inventory.levels(service_token, sku)
    on_hand_now = sum(on_hand for on_hand, _ in stock.values())
    reserved_now = sum(reserved for _, reserved in stock.values())
    assert on_hand_now + 7 == 10  # initial on_hand == on_hand now + units confirmed sold
    assert reserved_now == 1  # only `held` is still active
    [event] = await events(engine, sold, "ReservationsConfirmed")
    assert event["subject"] == "kassa.warehouse.ReservationsConfirmed"
    assert event["data"]["reservation_ref"] == sold
    assert sorted((ln["warehouse_id"], ln["quantity"]) for ln in event["data"]["lines"]) == sorted(
        (r.warehouse_id, r.quantity) for r in first_confirm.reservations
    )


async def test_confirm_after_release_is_refused_as_session_expired(inventory, seed, service_token) -> None:
    wh = await seed.warehouse()
    sku = unique("sku")
    await seed.stock([(sku, wh, 5)])
    ref = unique("ref")
    await inventory.reserve(service_token, ref, [(sku, 2)])
    await release(inventory, service_token, ref)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await confirm(inventory, service_token, ref)

    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(err.value)
    assert info is not None and info.reason == "SESSION_EXPIRED"
    assert await inventory.levels(service_token, sku) == {(sku, wh): (5, 0)}


async def test_extend_pushes_expiry_of_every_reservation(inventory, seed, service_token) -> None:
    wh = await seed.warehouse()
    a, b = unique("a"), unique("b")
    await seed.stock([(a, wh, 5), (b, wh, 5)])
    ref = unique("ref")
    reserved = await inventory.reserve(service_token, ref, [(a, 1), (b, 1)], ttl_seconds=60)

    extended = await inventory.ExtendReservations(
        pb.ExtendReservationsRequest(reservation_ref=ref, ttl=Duration(seconds=3600)), metadata=bearer(service_token)
    )

    assert len(extended.reservations) == 2
    assert all(r.expires_at.seconds >= reserved.expires_at.seconds + 3000 for r in extended.reservations)
    assert extended.expires_at == min((r.expires_at for r in extended.reservations), key=lambda t: t.seconds)


async def test_unknown_ref_is_not_found_and_batch_get_is_empty(inventory, service_token) -> None:
    ref = unique("nobody")
    md = bearer(service_token)

    got = await inventory.BatchGetReservations(pb.BatchGetReservationsRequest(reservation_ref=ref), metadata=md)
    calls = [
        inventory.ExtendReservations(pb.ExtendReservationsRequest(reservation_ref=ref), metadata=md),
        inventory.ReleaseReservations(pb.ReleaseReservationsRequest(reservation_ref=ref), metadata=md),
        inventory.ConfirmReservations(pb.ConfirmReservationsRequest(reservation_ref=ref), metadata=md),
    ]
    codes = []
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        codes.append(err.value.code())

    assert list(got.reservations) == []
    assert codes == [grpc.StatusCode.NOT_FOUND] * 3


async def test_batch_get_returns_the_current_state(inventory, seed, service_token) -> None:
    wh = await seed.warehouse("FR")
    sku = unique("sku")
    await seed.stock([(sku, wh, 5)])
    ref = unique("ref")
    reserved = await inventory.reserve(service_token, ref, [(sku, 2)])
    await confirm(inventory, service_token, ref)

    got = await inventory.BatchGetReservations(
        pb.BatchGetReservationsRequest(reservation_ref=ref), metadata=bearer(service_token)
    )

    [r] = got.reservations
    assert r.reservation_id == reserved.reservations[0].reservation_id
    assert (r.status, r.quantity, r.origin.country_code) == (CONFIRMED, 2, "FR")
