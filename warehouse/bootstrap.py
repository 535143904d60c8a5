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
from warehouse.biz.check_stock import CheckStock
from warehouse.biz.confirm_reservations import ConfirmReservations
from warehouse.biz.expire_reservations import ExpireReservations
from warehouse.biz.extend_reservations import ExtendReservations
from warehouse.biz.get_reservations import GetReservations
from warehouse.biz.list_warehouses import ListWarehouses
from warehouse.biz.reconcile_stock import ReconcileStock
from warehouse.biz.release_reservations import ReleaseReservations
from warehouse.biz.reserve_stock import ReserveStock
from warehouse.biz.return_order_stock import ReturnOrderStock
from warehouse.biz.set_stock import SetStock
from warehouse.biz.upsert_warehouses import UpsertWarehouses
from warehouse.data.repositories import SqlUnitOfWork
from warehouse.data.tables import audit_log, outbox
from warehouse.service import stock_admin_service
from warehouse.service.inventory_service import InventoryServiceServicer, InventoryUseCases
from warehouse.service.stock_admin_service import StockAdminServiceServicer
from warehouse.worker.drift import DriftAudit
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

    publisher = OutboxPublisher(engine, outbox, js)
    uow = SqlUnitOfWork(engine, on_commit=publisher.notify)
    use_cases = InventoryUseCases(
        check_stock=CheckStock(uow),
        reserve_stock=ReserveStock(uow),
        get_reservations=GetReservations(uow),
        extend_reservations=ExtendReservations(uow),
        release_reservations=ReleaseReservations(uow),
        confirm_reservations=ConfirmReservations(uow),
        set_stock=SetStock(uow),
        list_warehouses=ListWarehouses(uow),
        upsert_warehouses=UpsertWarehouses(uow),
    )
    reconcile = ReconcileStock(uow)
    servicer = InventoryServiceServicer(use_cases, settings.reservation_ttl_seconds)
    sweeper = Sweeper(ExpireReservations(uow))
    drift = DriftAudit(reconcile, settings.warehouse_reconcile_seconds)
    consumer = order_events_consumer(js, ReturnOrderStock(uow))
    audit = AuditTrail(
        engine,
        audit_log,
        service="warehouse",
        reads=("CheckStock", "BatchGetReservations", "ListWarehouses", *stock_admin_service.READS),
    )
    return App(
        registrations=[
            Registration(add_InventoryServiceServicer_to_server, servicer, "kassa.warehouse.v1.InventoryService"),
            Registration(
                add_StockAdminServiceServicer_to_server,
                StockAdminServiceServicer(reconcile),
                "kassa.warehouse.v1.StockAdminService",
            ),
            audit.registration,
            outbox_status_registration(engine, outbox, "warehouse"),
        ],
        workers=[publisher.run, sweeper.run, consumer.run, drift.run],
        interceptors=[audit.interceptor],
    )
