"""The one place the warehouse's concrete parts are chosen and wired."""

from __future__ import annotations

from contextlib import AsyncExitStack

from infra.audit import AuditTrail
from infra.config import Settings
from infra.db import create_engine
from infra.events import connect, ensure_streams
from infra.ops import outbox_status_registration
from infra.outbox import OutboxPublisher
from infra.runner import App
from infra.server import Registration
from kassa.warehouse.v1.inventory_service_pb2_grpc import add_InventoryServiceServicer_to_server
from kassa.warehouse.v1.stock_admin_service_pb2_grpc import add_StockAdminServiceServicer_to_server
from warehouse.data.repository import SqlInventoryStore
from warehouse.data.tables import audit_log, outbox
from warehouse.service import stock_admin
from warehouse.service.inventory import InventoryService
from warehouse.worker.order_events import order_events_consumer
from warehouse.worker.sweeper import Sweeper

__all__ = ["bootstrap"]


async def bootstrap(settings: Settings, stack: AsyncExitStack) -> App:
    settings.require("database_url", "nats_url")
    assert settings.database_url is not None and settings.nats_url is not None
    engine = create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        application_name="kassa-warehouse",
        pgbouncer=settings.pgbouncer,
    )
    stack.push_async_callback(engine.dispose)
    nc, js = await connect(settings.nats_url, "kassa-warehouse")
    stack.push_async_callback(nc.close)
    await ensure_streams(js, ["warehouse", "order"])

    store = SqlInventoryStore(engine)
    servicer = InventoryService(store, settings.reservation_ttl_seconds)
    publisher = OutboxPublisher(engine, outbox, js)
    sweeper = Sweeper(store)
    consumer = order_events_consumer(js, store)
    audit = AuditTrail(
        engine,
        audit_log,
        service="warehouse",
        reads=("CheckStock", "BatchGetReservations", "ListWarehouses", *stock_admin.READS),
    )
    return App(
        registrations=[
            Registration(add_InventoryServiceServicer_to_server, servicer, "kassa.warehouse.v1.InventoryService"),
            Registration(
                add_StockAdminServiceServicer_to_server,
                stock_admin.StockAdminService(store),
                "kassa.warehouse.v1.StockAdminService",
            ),
            audit.registration,
            outbox_status_registration(engine, outbox, "warehouse"),
        ],
        workers=[publisher.run, sweeper.run, consumer.run],
        interceptors=[audit.interceptor],
    )
