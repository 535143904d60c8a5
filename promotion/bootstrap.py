"""Composition root of the promotion service: the one place concrete parts are chosen."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import UTC, datetime

from infra.audit import AuditTrail
from infra.config import Settings
from infra.db import create_engine
from infra.events import connect, ensure_streams
from infra.ops import outbox_status_registration
from infra.outbox import OutboxPublisher
from infra.runner import App
from infra.server import Registration
from kassa.promotion.v1 import promotion_service_pb2_grpc
from promotion.biz.create import CreatePromotion
from promotion.biz.give_back import GiveBackOrderUsage
from promotion.biz.reserve import ReservePromotionUsage
from promotion.biz.settle import ConfirmPromotionUsage, ReleasePromotionUsage
from promotion.biz.validate import ValidatePromotions
from promotion.data.repositories import SqlUnitOfWork
from promotion.data.tables import audit_log, outbox
from promotion.service.promotion_service import PromotionServiceServicer
from promotion.worker.order_events import order_events_consumer

__all__ = ["bootstrap"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def bootstrap(settings: Settings, stack: AsyncExitStack) -> App:
    settings.require("database_url", "nats_url")
    engine = create_engine(
        str(settings.database_url),
        pool_size=settings.db_pool_size,
        application_name="kassa-promotion",
        pgbouncer=settings.pgbouncer,
    )
    stack.push_async_callback(engine.dispose)
    nc, js = await connect(str(settings.nats_url), "kassa-promotion")
    stack.push_async_callback(nc.close)
    await ensure_streams(js, ["promotion", "order"])
    publisher = OutboxPublisher(engine, outbox, js)
    uow = SqlUnitOfWork(engine, on_commit=publisher.notify)
    consumer = order_events_consumer(js, GiveBackOrderUsage(uow))
    servicer = PromotionServiceServicer(
        validate=ValidatePromotions(uow, _utcnow),
        reserve=ReservePromotionUsage(uow, _utcnow),
        confirm=ConfirmPromotionUsage(uow),
        release=ReleasePromotionUsage(uow),
        create=CreatePromotion(uow),
    )
    audit = AuditTrail(engine, audit_log, service="promotion", reads=("ValidatePromotions",))
    return App(
        registrations=[
            Registration(
                promotion_service_pb2_grpc.add_PromotionServiceServicer_to_server,
                servicer,
                "kassa.promotion.v1.PromotionService",
            ),
            audit.registration,
            outbox_status_registration(engine, outbox, "promotion"),
        ],
        workers=[publisher.run, consumer.run],
        interceptors=[audit.interceptor],
    )
