"""The payment service's composition root: the one place concrete parts are chosen and closed."""

from __future__ import annotations

from contextlib import AsyncExitStack

import httpx

from infra.config import Settings
from infra.db import create_engine
from infra.events import connect, ensure_streams
from infra.outbox import OutboxPublisher
from infra.runner import App
from infra.server import Registration
from kassa.payment.v1 import payment_service_pb2_grpc
from payment.adapter.sandbox_provider import SandboxProvider
from payment.data.payment_repo import SqlPaymentRepo
from payment.data.tables import outbox
from payment.service.payment_service import PaymentService

__all__ = ["bootstrap", "provider_timeout"]


def provider_timeout(settings: Settings) -> float:
    """Leave a second of the caller's deadline to record the outcome after the provider gives up."""
    return max(settings.rpc_timeout_seconds - 1.0, 0.5)


async def bootstrap(settings: Settings, stack: AsyncExitStack) -> App:
    assert settings.database_url and settings.nats_url, "runner.main checks these"
    engine = create_engine(settings.database_url, pool_size=settings.db_pool_size, application_name="kassa-payment")
    stack.push_async_callback(engine.dispose)

    nc, js = await connect(settings.nats_url, "kassa-payment")
    stack.push_async_callback(nc.close)
    await ensure_streams(js, ["payment"])
    publisher = OutboxPublisher(engine, outbox, js)

    client = httpx.AsyncClient(base_url=settings.sandbox_url, timeout=provider_timeout(settings))
    stack.push_async_callback(client.aclose)
    sandbox = SandboxProvider(client, settings.webhook_secret)

    repo = SqlPaymentRepo(engine, on_event=publisher.notify)
    servicer = PaymentService(repo, sandbox, {sandbox.name: sandbox})
    return App(
        registrations=[
            Registration(
                payment_service_pb2_grpc.add_PaymentServiceServicer_to_server,
                servicer,
                "kassa.payment.v1.PaymentService",
            )
        ],
        workers=[publisher.run],
    )
