"""Composition root of the pricing service: the one place concrete parts are chosen."""

from __future__ import annotations

from contextlib import AsyncExitStack

from infra.audit import AuditTrail
from infra.config import Settings
from infra.db import create_engine
from infra.runner import App
from infra.server import Registration
from kassa.pricing.v1 import pricing_service_pb2_grpc
from pricing.biz.calculate_tax import CalculateTax
from pricing.biz.get_products import GetProducts
from pricing.biz.quote_order import QuoteOrder
from pricing.biz.quote_shipping import QuoteShipping
from pricing.biz.sync_products import SyncProducts
from pricing.biz.upsert_products import UpsertProducts
from pricing.data.repositories import SqlRateRepo, SqlUnitOfWork
from pricing.data.tables import audit_log
from pricing.service.pricing_service import PricingServiceServicer, PricingUseCases

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
    uow = SqlUnitOfWork(engine)
    rates = SqlRateRepo(engine)
    get_products, quote_shipping, calculate_tax = GetProducts(uow), QuoteShipping(rates), CalculateTax(rates)
    servicer = PricingServiceServicer(
        PricingUseCases(
            get_products=get_products,
            upsert_products=UpsertProducts(uow),
            quote_shipping=quote_shipping,
            calculate_tax=calculate_tax,
            quote_order=QuoteOrder(get_products, quote_shipping, calculate_tax),
            sync_products=SyncProducts(uow),
        )
    )
    reads = ("GetProducts", "QuoteShipping", "CalculateTax", "QuoteOrder", "SyncProducts")
    audit = AuditTrail(engine, audit_log, service="pricing", reads=reads)
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
