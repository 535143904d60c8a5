"""Warehouse test fixtures: one in-process warehouse server for the session, a stub, a raw engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import grpc
import pytest
import pytest_asyncio
from google.protobuf.duration_pb2 import Duration
from helpers import bearer, engine_for_tests, unique
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.localstack import StackEndpoints
from infra.config import Settings
from infra.migrate import migrate
from infra.runner import running_service
from kassa.common.v1 import address_pb2
from kassa.warehouse.v1 import inventory_pb2, inventory_service_pb2
from kassa.warehouse.v1.inventory_service_pb2_grpc import InventoryServiceStub
from warehouse.bootstrap import bootstrap


@pytest.fixture(scope="session")
def migrated(stack: StackEndpoints) -> StackEndpoints:
    """Only the warehouse schema: these tests must not depend on other services' migrations."""
    migrate(stack.database_url, ["warehouse"])
    return stack


class Inventory(InventoryServiceStub):
    """The generated stub plus the two calls nearly every test makes."""

    async def reserve(
        self,
        token: str,
        ref: str,
        lines: Sequence[tuple[str, int]],
        *,
        country: str = "",
        ttl_seconds: int | None = None,
    ) -> inventory_service_pb2.ReserveStockResponse:
        request = inventory_service_pb2.ReserveStockRequest(
            reservation_ref=ref,
            lines=[inventory_service_pb2.ReserveLine(sku=sku, quantity=qty) for sku, qty in lines],
            ship_to_country_code=country,
        )
        if ttl_seconds is not None:
            request.ttl.CopyFrom(Duration(seconds=ttl_seconds))
        return await self.ReserveStock(request, metadata=bearer(token))

    async def levels(self, token: str, *skus: str) -> dict[tuple[str, str], tuple[int, int]]:
        """(sku, warehouse_id) -> (on_hand, reserved), as CheckStock reports them."""
        response = await self.CheckStock(
            inventory_service_pb2.CheckStockRequest(
                items=[inventory_service_pb2.StockQuery(sku=s, quantity=1) for s in skus]
            ),
            metadata=bearer(token),
        )
        out = {}
        for level in response.levels:
            assert level.available == level.on_hand - level.reserved
            out[(level.sku, level.warehouse_id)] = (level.on_hand, level.reserved)
        return out


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def warehouse_addr(settings: Settings) -> AsyncIterator[str]:
    """The warehouse served once per session in this process (client processes dial this address);
    workers off so tests drive the sweeper themselves."""
    async with running_service(bootstrap, settings, "127.0.0.1:0", run_workers=False) as server:
        yield f"127.0.0.1:{server.port}"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def inventory(warehouse_addr: str) -> AsyncIterator[Inventory]:
    async with grpc.aio.insecure_channel(warehouse_addr) as channel:
        yield Inventory(channel)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    async with engine_for_tests(settings.database_url, "warehouse") as eng:
        yield eng


class Seeder:
    """Creates warehouses and stock through the admin RPCs, with ids unique to the calling test."""

    def __init__(self, stub: InventoryServiceStub, admin_token: str) -> None:
        self._stub = stub
        self._md = bearer(admin_token)

    async def warehouse(self, country: str = "US", name: str = "Depot") -> str:
        warehouse_id = unique("wh")
        address = address_pb2.Address(name=name, line1="1 Dock St", city="Portland", country_code=country)
        await self._stub.UpsertWarehouses(
            inventory_service_pb2.UpsertWarehousesRequest(
                warehouses=[inventory_pb2.Warehouse(warehouse_id=warehouse_id, name=name, address=address)]
            ),
            metadata=self._md,
        )
        return warehouse_id

    async def stock(self, items: Sequence[tuple[str, str, int]]) -> None:
        await self._stub.SetStock(
            inventory_service_pb2.SetStockRequest(
                items=[inventory_service_pb2.StockSetting(sku=s, warehouse_id=w, on_hand=n) for s, w, n in items]
            ),
            metadata=self._md,
        )


@pytest.fixture
def seed(inventory: InventoryServiceStub, admin_token: str) -> Seeder:
    return Seeder(inventory, admin_token)
