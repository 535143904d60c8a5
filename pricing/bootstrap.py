"""Composition root of the pricing service: the one place concrete parts are chosen."""

from __future__ import annotations

from contextlib import AsyncExitStack

from infra.audit import AuditTrail
from infra.config import Settings
from infra.db import create_engine
from infra.runner import App
from infra.server import Registration
from kassa.pricing.v1 import pricing_service_pb2_grpc
from pricing.data.repos import SqlProductRepo, SqlRateRepo
from pricing.data.tables import audit_log
from pricing.service.pricing_service import PricingService

__all__ = ["bootstrap"]


async def bootstrap(settings: Settings, stack: AsyncExitStack) -> App:
    settings.require("database_url")
    engine = create_engine(
        str(settings.database_url),
        pool_size=settings.db_pool_size,
        application_name="kassa-pricing",
        pgbouncer=settings.pgbouncer,
    )
    stack.push_async_callback(engine.dispose)
    servicer = PricingService(SqlProductRepo(engine), SqlRateRepo(engine))
    audit = AuditTrail(
        engine, audit_log, service="pricing", reads=("GetProducts", "QuoteShipping", "CalculateTax", "QuoteOrder")
    )
    return App(
        registrations=[
            Registration(
                pricing_service_pb2_grpc.add_PricingServiceServicer_to_server,
                servicer,
                "kassa.pricing.v1.PricingService",
            ),
            audit.registration,
        ],
        interceptors=[audit.interceptor],
    )
