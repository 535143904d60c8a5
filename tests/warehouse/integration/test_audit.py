"""The warehouse's audit log: SetStock and UpsertWarehouses by an admin, each recorded with its change."""

from __future__ import annotations

import grpc
import pytest
import sqlalchemy as sa
from audit_support import REFUSED, SUCCEEDED, assert_append_only, entries_of, list_status, new_admin
from helpers import bearer, unique

from kassa.common.v1 import address_pb2
from kassa.warehouse.v1 import inventory_pb2
from kassa.warehouse.v1 import inventory_service_pb2 as pb
from warehouse.data.tables import stock, warehouses

pytestmark = pytest.mark.integration

SET_STOCK = "kassa.warehouse.v1.InventoryService.SetStock"


@pytest.fixture
async def channel(warehouse_addr):
    async with grpc.aio.insecure_channel(warehouse_addr) as ch:
        yield ch


async def test_set_stock_is_recorded_with_the_change(inventory, seed, channel, engine, settings) -> None:
    wh = await seed.warehouse()
    sku = unique("sku")
    actor, token = new_admin(settings)

    await inventory.SetStock(
        pb.SetStockRequest(items=[pb.StockSetting(sku=sku, warehouse_id=wh, on_hand=7)]),
        metadata=(*bearer(token), ("x-request-id", "req-set-stock-1")),
    )

    [entry] = await entries_of(channel, token, actor)
    assert (entry.service, entry.actor, entry.actor_role, entry.action) == ("warehouse", actor, "admin", SET_STOCK)
    assert entry.outcome == SUCCEEDED
    assert list(entry.targets) == [f"warehouses/{wh}/stock/{sku}"]
    assert entry.request_id == "req-set-stock-1"
    assert dict(entry.request) == {"items": [{"sku": sku, "warehouse_id": wh, "on_hand": "7"}]}
    async with engine.connect() as conn:
        changed_at = (
            await conn.execute(sa.select(stock.c.updated_at).where(stock.c.sku == sku, stock.c.warehouse_id == wh))
        ).scalar_one()
    # Both are now() of one transaction: the entry was written with the change.
    assert entry.create_time.ToDatetime().replace(tzinfo=changed_at.tzinfo) == changed_at


async def test_upsert_warehouses_is_recorded_with_the_change(inventory, channel, engine, settings) -> None:
    actor, token = new_admin(settings)
    wh = unique("wh")
    address = address_pb2.Address(name="Dock Manager", line1="1 Dock St", city="Portland", country_code="US")

    await inventory.UpsertWarehouses(
        pb.UpsertWarehousesRequest(
            warehouses=[inventory_pb2.Warehouse(warehouse_id=wh, name="North", address=address)]
        ),
        metadata=bearer(token),
    )

    [entry] = await entries_of(channel, token, actor)
    assert entry.action == "kassa.warehouse.v1.InventoryService.UpsertWarehouses"
    assert (entry.outcome, list(entry.targets)) == (SUCCEEDED, [f"warehouses/{wh}"])
    # An address is personal data but for its country.
    recorded = entry.request["warehouses"][0]
    assert recorded["name"] == "North"
    assert dict(recorded["address"]) == {
        "name": "<redacted>",
        "line1": "<redacted>",
        "city": "<redacted>",
        "country_code": "US",
    }
    async with engine.connect() as conn:
        changed_at = (
            await conn.execute(sa.select(warehouses.c.updated_at).where(warehouses.c.warehouse_id == wh))
        ).scalar_one()
    assert entry.create_time.ToDatetime().replace(tzinfo=changed_at.tzinfo) == changed_at


async def test_a_refused_set_stock_is_recorded_as_refused_and_changes_nothing(
    inventory, seed, channel, settings, service_token
) -> None:
    wh = await seed.warehouse()
    sku = unique("sku")
    await seed.stock([(sku, wh, 5)])
    await inventory.reserve(service_token, unique("ref"), [(sku, 4)])
    actor, token = new_admin(settings)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await inventory.SetStock(
            pb.SetStockRequest(items=[pb.StockSetting(sku=sku, warehouse_id=wh, on_hand=1)]), metadata=bearer(token)
        )

    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # The entry written with the stock row rolled back with it; the refusal is recorded on its own, naming
    # what it was aimed at.
    [entry] = await entries_of(channel, token, actor)
    assert (entry.action, entry.outcome, entry.reason) == (SET_STOCK, REFUSED, "INVALID_ARGUMENT")
    assert "items[0].on_hand" in entry.message
    assert list(entry.targets) == [f"warehouses/{wh}/stock/{sku}"]
    assert await inventory.levels(service_token, sku) == {(sku, wh): (5, 4)}


async def test_reads_and_calls_by_others_are_not_recorded(inventory, seed, channel, settings, customer_token) -> None:
    actor, token = new_admin(settings)
    await inventory.ListWarehouses(pb.ListWarehousesRequest(), metadata=bearer(token))
    await inventory.CheckStock(
        pb.CheckStockRequest(items=[pb.StockQuery(sku="KB-001", quantity=1)]), metadata=bearer(token)
    )
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await inventory.SetStock(
            pb.SetStockRequest(items=[pb.StockSetting(sku="x", warehouse_id="y", on_hand=1)]),
            metadata=bearer(customer_token),
        )

    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await entries_of(channel, token, actor) == []
    assert await entries_of(channel, token, "", action="ListWarehouses") == []


async def test_only_admins_read_the_log(channel, settings, admin_token, customer_token, service_token) -> None:
    assert await list_status(channel, customer_token) == grpc.StatusCode.PERMISSION_DENIED
    assert await list_status(channel, service_token) == grpc.StatusCode.PERMISSION_DENIED
    assert await list_status(channel, admin_token) == grpc.StatusCode.OK


async def test_the_database_refuses_to_change_an_entry(inventory, seed, engine) -> None:
    await seed.warehouse()  # at least one entry

    await assert_append_only(engine, "warehouse")


async def test_a_hostile_request_is_still_recorded(inventory, channel, settings) -> None:
    actor, token = new_admin(settings)
    items = [pb.StockSetting(sku="bad\x00sku" + "x" * 3000, warehouse_id="w\x00" * 100, on_hand=-(2**62))] * 1000

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await inventory.SetStock(pb.SetStockRequest(items=items), metadata=bearer(token))

    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    [entry] = await entries_of(channel, token, actor)
    assert (entry.outcome, entry.reason) == (REFUSED, "INVALID_ARGUMENT")
    recorded = entry.request["items"]
    assert len(recorded) == 51 and recorded[-1] == "+950 more"
    assert "\x00" not in recorded[0]["sku"] and len(recorded[0]["sku"]) == 200
