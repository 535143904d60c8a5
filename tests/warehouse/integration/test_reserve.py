from __future__ import annotations

import asyncio

import grpc
import pytest
import sqlalchemy as sa
from helpers import RoundTrips, Trips, bearer, unique

from infra.grpc_errors import error_info
from kassa.warehouse.v1 import inventory_pb2
from kassa.warehouse.v1 import inventory_service_pb2 as pb
from kernel.errors import FailedPrecondition, NotFound, Reason
from warehouse.biz.confirm_reservations import ConfirmReservations
from warehouse.biz.release_reservations import ReleaseReservations
from warehouse.biz.reserve_stock import ReserveCommand, ReserveStock
from warehouse.data.repositories import SqlUnitOfWork
from warehouse.data.tables import outbox, reservations
from warehouse.model.allocation import Allocation
from warehouse.model.inventory import ReservationStatus, ReserveLine

pytestmark = pytest.mark.integration


async def test_reserve_holds_stock_and_returns_the_origin_address(inventory, seed, service_token) -> None:
    wh = await seed.warehouse("US", name="West")
    sku = unique("sku")
    await seed.stock([(sku, wh, 10)])

    response = await inventory.reserve(service_token, unique("ref"), [(sku, 3)], ttl_seconds=600)

    [r] = response.reservations
    assert (r.sku, r.warehouse_id, r.quantity) == (sku, wh, 3)
    assert r.status == inventory_pb2.RESERVATION_STATUS_ACTIVE
    assert r.origin.country_code == "US" and r.origin.city == "Portland" and r.origin.name == "West"
    assert response.expires_at == r.expires_at
    assert await inventory.levels(service_token, sku) == {(sku, wh): (10, 3)}


async def test_all_or_nothing_names_every_short_sku(inventory, seed, service_token) -> None:
    wh = await seed.warehouse()
    a, b, ghost = unique("a"), unique("b"), unique("ghost")
    await seed.stock([(a, wh, 5), (b, wh, 2)])
    ref = unique("ref")

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await inventory.reserve(service_token, ref, [(a, 3), (b, 5), (ghost, 1)])

    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(err.value)
    assert info is not None and info.reason == "OUT_OF_STOCK"
    assert dict(info.metadata) == {"skus": f"{b},{ghost}", f"available.{b}": "2", f"available.{ghost}": "0"}
    assert await inventory.levels(service_token, a, b) == {(a, wh): (5, 0), (b, wh): (2, 0)}
    got = await inventory.BatchGetReservations(
        pb.BatchGetReservationsRequest(reservation_ref=ref), metadata=bearer(service_token)
    )
    assert list(got.reservations) == []


async def test_retry_with_the_same_ref_reserves_nothing_twice(inventory, seed, service_token) -> None:
    wh = await seed.warehouse()
    sku = unique("sku")
    await seed.stock([(sku, wh, 10)])
    ref = unique("ref")

    first = await inventory.reserve(service_token, ref, [(sku, 4)])
    again = await inventory.reserve(service_token, ref, [(sku, 4)])
    concurrent = await asyncio.gather(*(inventory.reserve(service_token, ref, [(sku, 4)]) for _ in range(5)))

    ids = {r.reservation_id for r in first.reservations}
    assert {r.reservation_id for r in again.reservations} == ids
    assert all({r.reservation_id for r in c.reservations} == ids for c in concurrent)
    assert await inventory.levels(service_token, sku) == {(sku, wh): (10, 4)}


async def test_a_released_ref_reserves_anew(inventory, seed, service_token) -> None:
    wh = await seed.warehouse()
    sku = unique("sku")
    await seed.stock([(sku, wh, 10)])
    ref = unique("ref")
    first = await inventory.reserve(service_token, ref, [(sku, 4)])
    await inventory.ReleaseReservations(
        pb.ReleaseReservationsRequest(reservation_ref=ref), metadata=bearer(service_token)
    )

    second = await inventory.reserve(service_token, ref, [(sku, 6)])

    [r] = second.reservations
    assert r.reservation_id != first.reservations[0].reservation_id
    assert (r.quantity, r.status) == (6, inventory_pb2.RESERVATION_STATUS_ACTIVE)
    assert await inventory.levels(service_token, sku) == {(sku, wh): (10, 6)}


async def test_duplicate_skus_in_one_request_are_summed(inventory, seed, service_token) -> None:
    wh = await seed.warehouse()
    sku = unique("sku")
    await seed.stock([(sku, wh, 10)])

    response = await inventory.reserve(service_token, unique("ref"), [(sku, 2), (sku, 5)])

    assert [(r.sku, r.quantity) for r in response.reservations] == [(sku, 7)]
    assert await inventory.levels(service_token, sku) == {(sku, wh): (10, 7)}


async def test_hot_sku_is_never_oversold(inventory, seed, service_token) -> None:
    wh = await seed.warehouse()
    sku = unique("hot")
    await seed.stock([(sku, wh, 5)])

    results = await asyncio.gather(
        *(inventory.reserve(service_token, unique("ref"), [(sku, 1)]) for _ in range(30)), return_exceptions=True
    )

    won = [r for r in results if isinstance(r, pb.ReserveStockResponse)]
    lost = [r for r in results if not isinstance(r, pb.ReserveStockResponse)]
    assert len(won) == 5
    assert len(lost) == 25
    for exc in lost:
        assert isinstance(exc, grpc.aio.AioRpcError)
        assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
        info = error_info(exc)
        assert info is not None and info.reason == "OUT_OF_STOCK"
        assert dict(info.metadata) == {"skus": sku, f"available.{sku}": "0"}
    assert await inventory.levels(service_token, sku) == {(sku, wh): (5, 5)}


async def test_opposite_line_orders_reserve_concurrently_without_deadlock(inventory, seed, service_token) -> None:
    w1, w2 = await seed.warehouse(), await seed.warehouse()
    a, b = unique("a"), unique("b")
    await seed.stock([(a, w1, 30), (b, w1, 30), (a, w2, 30), (b, w2, 30)])

    calls = []
    for i in range(20):
        lines = [(a, 2), (b, 2)] if i % 2 == 0 else [(b, 2), (a, 2)]
        calls.append(inventory.reserve(service_token, unique("ref"), lines))
    results = await asyncio.gather(*calls)

    assert all(len(r.reservations) >= 2 for r in results)
    stock = await inventory.levels(service_token, a, b)
    assert sum(reserved for (sku, _), (_, reserved) in stock.items() if sku == a) == 40
    assert sum(reserved for (sku, _), (_, reserved) in stock.items() if sku == b) == 40
    assert all(on_hand >= reserved for on_hand, reserved in stock.values())


async def test_allocation_prefers_one_warehouse_in_the_ship_to_country(inventory, seed, service_token) -> None:
    us, de, split = await seed.warehouse("US"), await seed.warehouse("DE"), await seed.warehouse("DE")
    a, b = unique("a"), unique("b")
    await seed.stock([(a, us, 5), (b, us, 5), (a, de, 5), (b, de, 5), (a, split, 50)])

    to_de = await inventory.reserve(service_token, unique("ref"), [(a, 2), (b, 2)], country="DE")
    to_us = await inventory.reserve(service_token, unique("ref"), [(a, 2), (b, 2)], country="US")

    assert {(r.sku, r.warehouse_id) for r in to_de.reservations} == {(a, de), (b, de)}
    assert {r.origin.country_code for r in to_de.reservations} == {"DE"}
    assert {(r.sku, r.warehouse_id) for r in to_us.reservations} == {(a, us), (b, us)}


async def test_allocation_splits_across_the_fewest_warehouses(inventory, seed, service_token) -> None:
    big, small1, small2 = await seed.warehouse(), await seed.warehouse(), await seed.warehouse()
    sku = unique("sku")
    await seed.stock([(sku, big, 6), (sku, small1, 3), (sku, small2, 3)])

    response = await inventory.reserve(service_token, unique("ref"), [(sku, 8)])

    held = {r.warehouse_id: r.quantity for r in response.reservations}
    assert held[big] == 6
    assert sum(held.values()) == 8
    assert len(held) == 2


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"reservation_ref": "", "lines": [("S", 1)]}, "reservation_ref"),
        ({"lines": []}, "lines"),
        ({"lines": [("S", 1), ("S2", 0)]}, "lines[1].quantity"),
        ({"lines": [("S", 1), ("S2", 100_001)]}, "lines[1].quantity"),
        ({"lines": [("S", 1), ("", 1)]}, "lines[1].sku"),
        ({"lines": [("S", 1)], "country": "USA"}, "ship_to_country_code"),
        ({"lines": [("S", 1)], "ttl": -5}, "ttl"),
        ({"reservation_ref": "ref\x00", "lines": [("S", 1)]}, "reservation_ref"),
        ({"lines": [("S", 1), ("sku\x00", 1)]}, "lines[1].sku"),
        ({"lines": [("S", 1)], "country": "us\n"}, "ship_to_country_code"),
    ],
)
async def test_invalid_reserve_names_the_field_and_writes_nothing(
    inventory, seed, service_token, request_fields, field
) -> None:
    wh = await seed.warehouse()
    sku = unique("sku")
    await seed.stock([(sku, wh, 10), (f"{sku}-2", wh, 10)])
    ref = request_fields.get("reservation_ref", unique("ref"))
    lines = [(sku if s == "S" else f"{sku}-2" if s == "S2" else s, q) for s, q in request_fields["lines"]]

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await inventory.reserve(
            service_token,
            ref,
            lines,
            country=request_fields.get("country", ""),
            ttl_seconds=request_fields.get("ttl"),
        )

    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(err.value)
    assert info is not None and info.reason == "INVALID_ARGUMENT"
    assert info.metadata["field"] == field
    assert await inventory.levels(service_token, sku, f"{sku}-2") == {(sku, wh): (10, 0), (f"{sku}-2", wh): (10, 0)}


async def test_customers_may_not_reserve_or_administer(inventory, seed, customer_token, service_token) -> None:
    wh = await seed.warehouse()
    sku = unique("sku")
    await seed.stock([(sku, wh, 10)])

    with pytest.raises(grpc.aio.AioRpcError) as reserve_err:
        await inventory.reserve(customer_token, unique("ref"), [(sku, 1)])
    with pytest.raises(grpc.aio.AioRpcError) as set_err:
        await inventory.SetStock(
            pb.SetStockRequest(items=[pb.StockSetting(sku=sku, warehouse_id=wh, on_hand=99)]),
            metadata=bearer(service_token),
        )
    with pytest.raises(grpc.aio.AioRpcError) as anonymous_err:
        await inventory.CheckStock(pb.CheckStockRequest(items=[pb.StockQuery(sku=sku)]))

    assert reserve_err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert set_err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert anonymous_err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await inventory.levels(service_token, sku) == {(sku, wh): (10, 0)}


async def test_a_reservation_is_answered_from_its_insert_with_no_read_after_it(seed, engine) -> None:
    """ReserveStock: the ref's lock; its reservations so far with the stock rows locked (one statement); then the
    hold and the insert that returns the reservations with their origin (one statement of CTEs): three statements
    in one transaction, none after the write. A retry answers the live reservations from the same read."""
    wh = await seed.warehouse("US", name="West")
    a, b = unique("a"), unique("b")
    await seed.stock([(a, wh, 10), (b, wh, 10)])
    trips = RoundTrips(engine)
    reserve_stock = ReserveStock(SqlUnitOfWork(engine))

    ref = unique("ref")
    held = await reserve_stock(ReserveCommand(ref, [ReserveLine(b, 1), ReserveLine(a, 2)], 600))

    assert trips.take() == Trips(statements=3, transactions=1, commits=1)
    assert [(r.sku, r.warehouse_id, r.quantity) for r in held] == [(a, wh, 2), (b, wh, 1)]
    assert {r.origin.name for r in held} == {"West"} and {r.status for r in held} == {ReservationStatus.ACTIVE}
    again = await reserve_stock(ReserveCommand(ref, [ReserveLine(b, 1), ReserveLine(a, 2)], 600))
    assert trips.take() == Trips(statements=2, transactions=1, commits=1)
    assert again == held
    assert await levels(engine, a, b) == {a: (10, 2), b: (10, 1)}


async def test_a_hold_that_does_not_take_inserts_no_reservation(seed, engine) -> None:
    """The insert reads the holds: a plan with a row that can't be held (more than is left) inserts nothing, and
    ReserveStock's refusal rolls back the holds that took."""
    wh = await seed.warehouse()
    a, b = unique("a"), unique("b")
    await seed.stock([(a, wh, 10), (b, wh, 1)])
    ref = unique("ref")

    with pytest.raises(FailedPrecondition):
        async with SqlUnitOfWork(engine).transaction() as tx:
            held, inserted = await tx.hold_and_insert(ref, [Allocation(a, wh, 2), Allocation(b, wh, 3)], 600)
            assert held == {(a, wh)} and inserted == []
            raise FailedPrecondition("short", reason=Reason.OUT_OF_STOCK)

    assert await levels(engine, a, b) == {a: (10, 0), b: (1, 0)}
    async with SqlUnitOfWork(engine).read() as tx:
        assert await tx.reservations_of(ref) == []


async def test_confirming_is_the_ref_lock_then_two_statements(seed, engine) -> None:
    """ConfirmReservations: the ref's lock; the move to CONFIRMED listing the ref's rows as they stand after it (one
    statement); the sold units leaving stock, their rows locked in order, with ReservationsConfirmed (one statement).
    A retry is the lock and the listing."""
    wh = await seed.warehouse("US", name="West")
    a, b = unique("a"), unique("b")
    await seed.stock([(a, wh, 10), (b, wh, 10)])
    uow = SqlUnitOfWork(engine)
    ref = unique("ref")
    await ReserveStock(uow)(ReserveCommand(ref, [ReserveLine(a, 2), ReserveLine(b, 1)], 600))
    trips = RoundTrips(engine)

    confirmed = await ConfirmReservations(uow)(ref)

    assert trips.take() == Trips(statements=3, transactions=1, commits=1)
    assert [(r.sku, r.quantity, r.status, r.origin.name) for r in confirmed] == [
        (a, 2, ReservationStatus.CONFIRMED, "West"),
        (b, 1, ReservationStatus.CONFIRMED, "West"),
    ]
    assert await levels(engine, a, b) == {a: (8, 0), b: (9, 0)}
    assert await events_of(engine, ref) == ["ReservationsConfirmed"]
    trips.take()
    again = await ConfirmReservations(uow)(ref)
    assert trips.take() == Trips(statements=2, transactions=1, commits=1)
    assert again == confirmed
    assert await levels(engine, a, b) == {a: (8, 0), b: (9, 0)}
    assert await events_of(engine, ref) == ["ReservationsConfirmed"]


async def test_confirming_a_ref_with_a_lapsed_row_confirms_nothing(seed, engine) -> None:
    wh = await seed.warehouse()
    a, b = unique("a"), unique("b")
    await seed.stock([(a, wh, 10), (b, wh, 10)])
    uow = SqlUnitOfWork(engine)
    ref = unique("ref")
    await ReserveStock(uow)(ReserveCommand(ref, [ReserveLine(a, 2), ReserveLine(b, 1)], 600))
    async with engine.begin() as conn:  # one of its rows past its TTL, not yet swept
        await conn.execute(
            reservations.update()
            .where(reservations.c.reservation_ref == ref, reservations.c.sku == b)
            .values(expires_at=sa.func.now() - sa.text("interval '1 second'"))
        )

    with pytest.raises(FailedPrecondition) as lapsed:
        await ConfirmReservations(uow)(ref)

    assert lapsed.value.reason == Reason.SESSION_EXPIRED and lapsed.value.metadata["states"] == "past_ttl"
    async with uow.read() as tx:
        assert {r.status for r in await tx.reservations_of(ref)} == {ReservationStatus.ACTIVE}
    assert await levels(engine, a, b) == {a: (10, 2), b: (10, 1)}
    assert await events_of(engine, ref) == []
    with pytest.raises(NotFound):
        await ConfirmReservations(uow)(unique("ref"))


async def test_releasing_is_the_ref_lock_then_two_statements(seed, engine) -> None:
    """ReleaseReservations: the ref's lock; the move to RELEASED listing the ref's rows; the units back in stock (their
    rows locked in order by the same statement). A repeat releases nothing more."""
    wh = await seed.warehouse()
    a = unique("a")
    await seed.stock([(a, wh, 10)])
    uow = SqlUnitOfWork(engine)
    ref = unique("ref")
    await ReserveStock(uow)(ReserveCommand(ref, [ReserveLine(a, 4)], 600))
    trips = RoundTrips(engine)

    released = await ReleaseReservations(uow)(ref)

    assert trips.take() == Trips(statements=3, transactions=1, commits=1)
    assert [(r.sku, r.quantity, r.status) for r in released] == [(a, 4, ReservationStatus.RELEASED)]
    assert await levels(engine, a) == {a: (10, 0)}
    trips.take()
    assert await ReleaseReservations(uow)(ref) == released
    assert trips.take() == Trips(statements=2, transactions=1, commits=1)
    assert await levels(engine, a) == {a: (10, 0)}
    with pytest.raises(NotFound):
        await ReleaseReservations(uow)(unique("ref"))


async def test_concurrent_confirms_and_releases_of_one_sku_sell_each_unit_once(seed, engine) -> None:
    """Stock rows are changed only under their locks, taken in order: many refs sharing two skus, confirmed and
    released at once, leave on_hand and reserved exact (and no deadlock)."""
    wh = await seed.warehouse()
    a, b = unique("a"), unique("b")
    await seed.stock([(a, wh, 100), (b, wh, 100)])
    uow = SqlUnitOfWork(engine)
    refs = [unique("ref") for _ in range(8)]
    for ref in refs:
        await ReserveStock(uow)(ReserveCommand(ref, [ReserveLine(a, 2), ReserveLine(b, 3)], 600))

    await asyncio.gather(
        *(ConfirmReservations(uow)(ref) for ref in refs[:5]), *(ReleaseReservations(uow)(ref) for ref in refs[5:])
    )

    assert await levels(engine, a, b) == {a: (100 - 5 * 2, 0), b: (100 - 5 * 3, 0)}


async def levels(engine, *skus: str) -> dict[str, tuple[int, int]]:
    async with SqlUnitOfWork(engine).read() as tx:
        return {lv.sku: (lv.on_hand, lv.reserved) for lv in await tx.stock_levels(list(skus))}


async def events_of(engine, ref: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(outbox.c.event_type).where(outbox.c.aggregate_id == ref).order_by(outbox.c.created_at)
        )
        return list(rows.scalars())
