from __future__ import annotations

import grpc
import pytest
import sqlalchemy as sa
from helpers import bearer, unique
from sqlalchemy.exc import IntegrityError

from infra.events import connect
from infra.grpc_errors import error_info
from infra.outbox import OutboxPublisher
from kassa.common.v1 import address_pb2
from kassa.warehouse.v1 import inventory_pb2
from kassa.warehouse.v1 import inventory_service_pb2 as pb
from warehouse.data.tables import outbox, stock

pytestmark = pytest.mark.integration


def field_of(err: grpc.aio.AioRpcError) -> str:
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(err)
    assert info is not None
    return info.metadata["field"]


async def test_set_stock_refuses_on_hand_below_reserved_and_writes_nothing(
    inventory, seed, admin_token, service_token
) -> None:
    wh = await seed.warehouse()
    a, b = unique("a"), unique("b")
    await seed.stock([(a, wh, 10), (b, wh, 10)])
    await inventory.reserve(service_token, unique("ref"), [(b, 4)])

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await inventory.SetStock(
            pb.SetStockRequest(
                items=[
                    pb.StockSetting(sku=a, warehouse_id=wh, on_hand=1),
                    pb.StockSetting(sku=b, warehouse_id=wh, on_hand=3),
                ]
            ),
            metadata=bearer(admin_token),
        )
    lowered = await inventory.SetStock(
        pb.SetStockRequest(items=[pb.StockSetting(sku=b, warehouse_id=wh, on_hand=4)]), metadata=bearer(admin_token)
    )

    assert field_of(err.value) == "items[1].on_hand"
    assert [(lv.on_hand, lv.reserved, lv.available) for lv in lowered.levels] == [(4, 4, 0)]
    assert await inventory.levels(service_token, a, b) == {(a, wh): (10, 0), (b, wh): (4, 4)}


async def test_set_stock_refuses_unknown_warehouse_and_bad_items(inventory, admin_token) -> None:
    sku = unique("sku")
    cases = {
        "items[0].warehouse_id": [pb.StockSetting(sku=sku, warehouse_id=unique("nowhere"), on_hand=1)],
        "items[0].on_hand": [pb.StockSetting(sku=sku, warehouse_id="w", on_hand=-1)],
        "items[1]": [pb.StockSetting(sku=sku, warehouse_id="w", on_hand=1)] * 2,
        "items": [],
    }
    fields = []
    for items in cases.values():
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await inventory.SetStock(pb.SetStockRequest(items=items), metadata=bearer(admin_token))
        fields.append(field_of(err.value))

    assert fields == list(cases)


async def test_check_stock_reports_real_levels_not_the_request(inventory, seed, service_token) -> None:
    w1, w2 = await seed.warehouse(), await seed.warehouse()
    sku, ghost = unique("sku"), unique("ghost")
    await seed.stock([(sku, w1, 5), (sku, w2, 2)])
    await inventory.reserve(service_token, unique("ref"), [(sku, 3)])

    response = await inventory.CheckStock(
        pb.CheckStockRequest(items=[pb.StockQuery(sku=sku, quantity=999), pb.StockQuery(sku=ghost, quantity=1)]),
        metadata=bearer(service_token),
    )

    got = {(lv.warehouse_id, lv.on_hand, lv.reserved, lv.available) for lv in response.levels}
    assert got == {(w1, 5, 3, 2), (w2, 2, 0, 2)}


async def test_upsert_and_list_warehouses(inventory, admin_token, service_token) -> None:
    wh = unique("wh")
    address = address_pb2.Address(name="North", line1="2 Quay", city="Oslo", postal_code="0150", country_code="NO")
    md = bearer(admin_token)
    await inventory.UpsertWarehouses(
        pb.UpsertWarehousesRequest(warehouses=[inventory_pb2.Warehouse(warehouse_id=wh, name="Old", address=address)]),
        metadata=md,
    )
    updated = await inventory.UpsertWarehouses(
        pb.UpsertWarehousesRequest(warehouses=[inventory_pb2.Warehouse(warehouse_id=wh, name="New", address=address)]),
        metadata=md,
    )
    with pytest.raises(grpc.aio.AioRpcError) as bad_country:
        await inventory.UpsertWarehouses(
            pb.UpsertWarehousesRequest(
                warehouses=[inventory_pb2.Warehouse(warehouse_id=unique("wh"), name="X", address=address_pb2.Address())]
            ),
            metadata=md,
        )

    listed = await inventory.ListWarehouses(pb.ListWarehousesRequest(), metadata=bearer(service_token))
    [mine] = [w for w in listed.warehouses if w.warehouse_id == wh]
    assert [w.name for w in updated.warehouses] == ["New"]
    assert (mine.name, mine.address.city, mine.address.postal_code, mine.address.country_code) == (
        "New",
        "Oslo",
        "0150",
        "NO",
    )
    assert field_of(bad_country.value) == "warehouses[0].address.country_code"


async def test_check_constraints_refuse_oversell_even_in_raw_sql(seed, engine) -> None:
    wh = await seed.warehouse()
    sku = unique("sku")
    await seed.stock([(sku, wh, 3)])
    row = sa.and_(stock.c.sku == sku, stock.c.warehouse_id == wh)

    for values in ({"reserved": 4}, {"on_hand": -1}, {"reserved": -1}):
        with pytest.raises(IntegrityError, match="stock_"):
            async with engine.begin() as conn:
                await conn.execute(stock.update().where(row).values(**values))

    async with engine.connect() as conn:
        current = (await conn.execute(sa.select(stock.c.on_hand, stock.c.reserved).where(row))).one()
    assert tuple(current) == (3, 0)


async def test_confirmed_event_reaches_jetstream(inventory, seed, service_token, engine, settings) -> None:
    wh = await seed.warehouse()
    sku = unique("sku")
    await seed.stock([(sku, wh, 5)])
    ref = unique("ref")
    await inventory.reserve(service_token, ref, [(sku, 2)])
    await inventory.ConfirmReservations(
        pb.ConfirmReservationsRequest(reservation_ref=ref), metadata=bearer(service_token)
    )
    nc, js = await connect(settings.nats_url, "warehouse-tests")
    try:
        publisher = OutboxPublisher(engine, outbox, js)
        while await publisher.publish_once():
            pass
        async with engine.connect() as conn:
            event_id = await conn.scalar(sa.select(outbox.c.event_id).where(outbox.c.aggregate_id == ref))
        msg = await js.get_last_msg("KASSA_WAREHOUSE", "kassa.warehouse.ReservationsConfirmed")
    finally:
        await nc.close()

    assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == str(event_id)
    assert b'"reservation_ref": "' + ref.encode() + b'"' in msg.data


async def test_control_characters_are_refused_by_name_before_postgres_sees_them(
    inventory, seed, admin_token, service_token
) -> None:
    """A NUL in a sku, warehouse id, reference, name or address reached Postgres and came back INTERNAL."""
    wh = await seed.warehouse()
    sku = unique("sku")
    await seed.stock([(sku, wh, 10)])
    ref = unique("ref")
    await inventory.reserve(service_token, ref, [(sku, 1)])
    address = address_pb2.Address(name="North", line1="2 Quay", city="Oslo", postal_code="0150", country_code="NO")
    admin, service = bearer(admin_token), bearer(service_token)
    calls = {
        "items[0].sku": inventory.SetStock(
            pb.SetStockRequest(items=[pb.StockSetting(sku="a\x00b", warehouse_id=wh, on_hand=1)]), metadata=admin
        ),
        "items[0].warehouse_id": inventory.SetStock(
            pb.SetStockRequest(items=[pb.StockSetting(sku=sku, warehouse_id=f"{wh}\x00", on_hand=1)]), metadata=admin
        ),
        "warehouses[0].name": inventory.UpsertWarehouses(
            pb.UpsertWarehousesRequest(
                warehouses=[inventory_pb2.Warehouse(warehouse_id=unique("wh"), name="N\x00", address=address)]
            ),
            metadata=admin,
        ),
        "warehouses[0].address.line1": inventory.UpsertWarehouses(
            pb.UpsertWarehousesRequest(
                warehouses=[
                    inventory_pb2.Warehouse(
                        warehouse_id=unique("wh"),
                        name="North",
                        address=address_pb2.Address(line1="2\x00Quay", city="Oslo", country_code="NO"),
                    )
                ]
            ),
            metadata=admin,
        ),
        "warehouses[0].address.country_code": inventory.UpsertWarehouses(
            pb.UpsertWarehousesRequest(
                warehouses=[
                    inventory_pb2.Warehouse(
                        warehouse_id=unique("wh"), name="North", address=address_pb2.Address(country_code="NO\n")
                    )
                ]
            ),
            metadata=admin,
        ),
        "items[0].sku ": inventory.CheckStock(
            pb.CheckStockRequest(items=[pb.StockQuery(sku="\x00", quantity=1)]), metadata=service
        ),
        "reservation_ref": inventory.BatchGetReservations(
            pb.BatchGetReservationsRequest(reservation_ref="r\x00"), metadata=service
        ),
        "reservation_ref ": inventory.ConfirmReservations(
            pb.ConfirmReservationsRequest(reservation_ref="r\x00"), metadata=service
        ),
        "reason": inventory.ReleaseReservations(
            pb.ReleaseReservationsRequest(reservation_ref=ref, reason="gone\x00"), metadata=service
        ),
    }
    for field, call in calls.items():
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert field_of(err.value) == field.strip()
    assert await inventory.levels(service_token, sku) == {(sku, wh): (10, 1)}
