"""The one place the order service's concrete parts are chosen and wired."""

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
from kassa.order.v1.order_service_pb2_grpc import add_OrderServiceServicer_to_server
from order.biz.apply_payment_event import ApplyPaymentEvent
from order.biz.cancel_order import CancelOrder
from order.biz.create_order import CreateOrder
from order.biz.get_order import GetOrder
from order.biz.get_order_timeline import GetOrderTimeline
from order.biz.list_orders import ListOrders
from order.biz.record_payment import RecordPayment
from order.biz.update_fulfillment import UpdateFulfillment
from order.data.repositories import SERVICE, SqlUnitOfWork
from order.data.tables import audit_log, outbox
from order.service.order_service import OrderServiceServicer, UseCases
from order.service.validation import Limits
from order.worker.payment_events import payment_event_consumer

__all__ = ["bootstrap"]


async def bootstrap(settings: Settings, stack: AsyncExitStack) -> App:
    settings.require("database_url", "nats_url")
    cipher = settings.pii_cipher()  # refuses to start without the keys to the order's personal data
    engine = create_engine(
        str(settings.database_url),
        pool_size=settings.db_pool_size,
        application_name="kassa-order",
        pgbouncer=settings.pgbouncer,
    )
    stack.push_async_callback(engine.dispose)
    nc, js = await connect(str(settings.nats_url), "kassa-order")
    stack.push_async_callback(nc.close)
    await ensure_streams(js, [SERVICE, "payment"])

    publisher = OutboxPublisher(engine, outbox, js, service=SERVICE)
    limits = Limits(max_lines=settings.max_cart_items, max_quantity=settings.max_item_quantity)
    uow = SqlUnitOfWork(engine, cipher, on_commit=publisher.notify)
    use_cases = UseCases(
        create_order=CreateOrder(uow),
        get_order=GetOrder(uow),
        list_orders=ListOrders(uow),
        cancel_order=CancelOrder(uow),
        record_payment=RecordPayment(uow),
        update_fulfillment=UpdateFulfillment(uow),
        get_order_timeline=GetOrderTimeline(uow),
    )
    consumer = payment_event_consumer(js, ApplyPaymentEvent(uow))
    audit = AuditTrail(engine, audit_log, service=SERVICE, reads=("GetOrder", "ListOrders", "GetOrderTimeline"))
    return App(
        registrations=[
            Registration(
                add_OrderServiceServicer_to_server,
                OrderServiceServicer(use_cases, limits),
                "kassa.order.v1.OrderService",
            ),
            audit.registration,
            outbox_status_registration(engine, outbox, SERVICE),
        ],
        workers=[publisher.run, consumer.run],
        interceptors=[audit.interceptor],
    )
