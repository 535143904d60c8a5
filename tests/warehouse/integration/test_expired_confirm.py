"""Confirm and Extend refuse a session whose stock is no longer held (DESIGN.md §4.4), as a whole.

Checkout captures money only after ConfirmReservations succeeds, so these refusals are what keeps it
from charging for units the sweeper already put back on sale.
"""

from __future__ import annotations

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf.duration_pb2 import Duration
from helpers import bearer, unique

from infra.grpc_errors import error_info
from kassa.warehouse.v1 import inventory_pb2
from kassa.warehouse.v1 import inventory_service_pb2 as pb
from tests.warehouse.integration.test_sweeper import wait_until_past_expiry
from warehouse.biz.expire_reservations import ExpireReservations
from warehouse.data.repositories import SqlUnitOfWork
from warehouse.data.tables import reservations
from warehouse.worker.sweeper import Sweeper

pytestmark = pytest.mark.integration

ACTIVE = inventory_pb2.RESERVATION_STATUS_ACTIVE


async def refused(call) -> dict[str, str]:
    """The ErrorInfo metadata of a SESSION_EXPIRED refusal (fails the test on anything else)."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(err.value)
    assert info is not None and info.reason == "SESSION_EXPIRED"
    return dict(info.metadata)


async def expire_now(engine, ref: str, sku: str) -> None:
    """Move one reservation's TTL into the past, as time would."""
    async with engine.begin() as conn:
        await conn.execute(
            reservations.update()
            .where(reservations.c.reservation_ref == ref, reservations.c.sku == sku)
            .values(expires_at=sa.func.now() - sa.text("interval '1 second'"))
        )


async def test_confirm_past_ttl_is_refused_before_the_sweeper_runs(inventory, seed, service_token, engine) -> None:
    wh = await seed.warehouse()
    sku = unique("sku")
    await seed.stock([(sku, wh, 5)])
    ref = unique("ref")
    md = bearer(service_token)
    await inventory.reserve(service_token, ref, [(sku, 2)], ttl_seconds=1)
    await wait_until_past_expiry(engine, [ref])

    metadata = await refused(
        inventory.ConfirmReservations(pb.ConfirmReservationsRequest(reservation_ref=ref), metadata=md)
    )

    assert metadata == {"reservation_ref": ref, "lapsed": f"{sku}@{wh}", "states": "past_ttl"}
    assert await inventory.levels(service_token, sku) == {(sku, wh): (5, 2)}  # nothing sold; held until swept
    got = await inventory.BatchGetReservations(pb.BatchGetReservationsRequest(reservation_ref=ref), metadata=md)
    assert [r.status for r in got.reservations] == [ACTIVE]


async def test_confirm_after_the_sweeper_is_refused_naming_the_expiry(inventory, seed, service_token, engine) -> None:
    wh = await seed.warehouse()
    sku = unique("sku")
    await seed.stock([(sku, wh, 5)])
    ref = unique("ref")
    md = bearer(service_token)
    await inventory.reserve(service_token, ref, [(sku, 2)], ttl_seconds=1)
    await wait_until_past_expiry(engine, [ref])
    assert await Sweeper(ExpireReservations(SqlUnitOfWork(engine))).sweep_once() >= 1

    confirm = await refused(
        inventory.ConfirmReservations(pb.ConfirmReservationsRequest(reservation_ref=ref), metadata=md)
    )
    extend = await refused(inventory.ExtendReservations(pb.ExtendReservationsRequest(reservation_ref=ref), metadata=md))

    assert confirm["states"] == extend["states"] == "expired"
    assert await inventory.levels(service_token, sku) == {(sku, wh): (5, 0)}


async def test_a_partly_expired_session_confirms_nothing(inventory, seed, service_token, engine) -> None:
    wh = await seed.warehouse()
    fresh, stale = unique("fresh"), unique("stale")
    await seed.stock([(fresh, wh, 5), (stale, wh, 5)])
    ref = unique("ref")
    md = bearer(service_token)
    await inventory.reserve(service_token, ref, [(fresh, 1), (stale, 2)], ttl_seconds=600)
    await expire_now(engine, ref, stale)
    before = await inventory.BatchGetReservations(pb.BatchGetReservationsRequest(reservation_ref=ref), metadata=md)

    confirm = await refused(
        inventory.ConfirmReservations(pb.ConfirmReservationsRequest(reservation_ref=ref), metadata=md)
    )
    extend = await refused(
        inventory.ExtendReservations(
            pb.ExtendReservationsRequest(reservation_ref=ref, ttl=Duration(seconds=3600)), metadata=md
        )
    )

    assert confirm["lapsed"] == extend["lapsed"] == f"{stale}@{wh}"
    after = await inventory.BatchGetReservations(pb.BatchGetReservationsRequest(reservation_ref=ref), metadata=md)
    assert list(after.reservations) == list(before.reservations)  # neither confirmed nor extended, not even in part
    assert {r.status for r in after.reservations} == {ACTIVE}
    assert await inventory.levels(service_token, fresh, stale) == {(fresh, wh): (5, 1), (stale, wh): (5, 2)}
