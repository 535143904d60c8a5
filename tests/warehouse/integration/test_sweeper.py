from __future__ import annotations

import asyncio

import grpc
import pytest
import sqlalchemy as sa
from helpers import RoundTrips, bearer, unique

from infra.grpc_errors import error_info
from kassa.warehouse.v1 import inventory_pb2
from kassa.warehouse.v1 import inventory_service_pb2 as pb
from warehouse.biz.expire_reservations import ExpireReservations
from warehouse.data.repositories import SqlUnitOfWork
from warehouse.data.tables import outbox, reservations
from warehouse.worker.sweeper import SWEEP_SECONDS, Sweeper

pytestmark = pytest.mark.integration


async def wait_until_past_expiry(engine, refs: list[str]) -> None:
    """Wait (bounded) until the database clock has passed every reservation's expires_at."""
    query = sa.select(sa.func.count()).where(
        reservations.c.reservation_ref.in_(refs), reservations.c.expires_at >= sa.func.now()
    )
    for _ in range(100):
        async with engine.connect() as conn:
            if (await conn.scalar(query)) == 0:
                return
        await asyncio.sleep(0.05)
    raise AssertionError("reservations did not pass their expiry")


async def expired_events(engine, refs: list[str]) -> list[dict]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(outbox.c.payload).where(
                outbox.c.aggregate_id.in_(refs), outbox.c.event_type == "ReservationExpired"
            )
        )
        return [r.payload["data"] for r in rows]


def assert_session_expired(err: grpc.aio.AioRpcError) -> None:
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(err)
    assert info is not None and info.reason == "SESSION_EXPIRED"


async def test_sweeper_expires_and_returns_stock_then_extend_is_refused(inventory, seed, service_token, engine) -> None:
    wh = await seed.warehouse()
    a, b = unique("a"), unique("b")
    await seed.stock([(a, wh, 5), (b, wh, 5)])
    ref = unique("ref")
    await inventory.reserve(service_token, ref, [(a, 2), (b, 3)], ttl_seconds=1)
    await wait_until_past_expiry(engine, [ref])
    md = bearer(service_token)

    with pytest.raises(grpc.aio.AioRpcError) as before_sweep:  # past TTL: refused even before the sweep
        await inventory.ExtendReservations(pb.ExtendReservationsRequest(reservation_ref=ref), metadata=md)
    expired = await Sweeper(ExpireReservations(SqlUnitOfWork(engine))).sweep_once()
    with pytest.raises(grpc.aio.AioRpcError) as extend_err:
        await inventory.ExtendReservations(pb.ExtendReservationsRequest(reservation_ref=ref), metadata=md)
    with pytest.raises(grpc.aio.AioRpcError) as confirm_err:
        await inventory.ConfirmReservations(pb.ConfirmReservationsRequest(reservation_ref=ref), metadata=md)

    assert expired >= 2
    got = await inventory.BatchGetReservations(pb.BatchGetReservationsRequest(reservation_ref=ref), metadata=md)
    assert {r.status for r in got.reservations} == {inventory_pb2.RESERVATION_STATUS_EXPIRED}
    assert await inventory.levels(service_token, a, b) == {(a, wh): (5, 0), (b, wh): (5, 0)}
    for err in (before_sweep, extend_err, confirm_err):
        assert_session_expired(err.value)
    [event] = await expired_events(engine, [ref])
    assert event["reservation_ref"] == ref
    assert sorted((ln["sku"], ln["quantity"]) for ln in event["lines"]) == sorted([(a, 2), (b, 3)])
    again = await inventory.reserve(service_token, ref, [(a, 1)])  # an expired ref may reserve anew
    assert [(r.sku, r.status) for r in again.reservations] == [(a, inventory_pb2.RESERVATION_STATUS_ACTIVE)]


async def test_concurrent_sweepers_expire_each_reservation_once(inventory, seed, service_token, engine) -> None:
    wh = await seed.warehouse()
    sku = unique("sku")
    await seed.stock([(sku, wh, 100)])
    refs = [unique("ref") for _ in range(12)]
    for ref in refs:
        await inventory.reserve(service_token, ref, [(sku, 3)], ttl_seconds=1)
    await wait_until_past_expiry(engine, refs)
    expire = ExpireReservations(SqlUnitOfWork(engine))
    sweepers = [Sweeper(expire, batch_size=4) for _ in range(3)]

    async def drain(sweeper: Sweeper) -> None:
        while await sweeper.sweep_once():
            pass

    await asyncio.gather(*(drain(s) for s in sweepers))

    assert await inventory.levels(service_token, sku) == {(sku, wh): (100, 0)}
    events = await expired_events(engine, refs)
    assert sorted(e["reservation_ref"] for e in events) == sorted(refs)


async def test_a_sweep_expires_at_most_its_batch(inventory, seed, service_token, engine) -> None:
    """A batch is a bound: the rows are leased once (a MATERIALIZED CTE), not once per row scanned."""
    wh = await seed.warehouse()
    sku = unique("sku")
    await seed.stock([(sku, wh, 100)])
    refs = [unique("ref") for _ in range(6)]
    for ref in refs:
        await inventory.reserve(service_token, ref, [(sku, 1)], ttl_seconds=1)
    await wait_until_past_expiry(engine, refs)
    sweeper = Sweeper(ExpireReservations(SqlUnitOfWork(engine)), batch_size=2)

    batches = []
    while expired := await sweeper.sweep_once():
        batches.append(expired)

    assert batches and max(batches) <= 2
    assert await inventory.levels(service_token, sku) == {(sku, wh): (100, 0)}
    assert sorted(e["reservation_ref"] for e in await expired_events(engine, refs)) == sorted(refs)


async def test_the_sweeper_runs_one_transaction_every_five_seconds(engine) -> None:
    """An idle warehouse sweeps every 5 s (was every second): 12 transactions a minute instead of 60."""
    sleeps: list[float] = []
    enough = asyncio.Event()

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            enough.set()
            await asyncio.Event().wait()  # parked until cancelled

    trips = RoundTrips(engine)
    task = asyncio.create_task(Sweeper(ExpireReservations(SqlUnitOfWork(engine)), sleep=sleep).run())
    try:
        await asyncio.wait_for(enough.wait(), 30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sleeps == [SWEEP_SECONDS] * 3 == [5.0] * 3
    assert trips.take().transactions == 3  # one per sweep
