"""A dropped database connection is a transient failure: UNAVAILABLE once, then served again.

The engines run without ``pool_pre_ping`` (a round trip per transaction), so a connection that
Postgres closed is only found out by the call that uses it. That call must say UNAVAILABLE (which
the mesh's clients retry), never INTERNAL, and the next call must get a fresh connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
import sqlalchemy as sa
from helpers import bearer
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.auth import JwtVerifier
from infra.config import Settings
from infra.db import create_engine
from infra.grpc_errors import error_info
from infra.server import Registration, Server, start_server
from kassa.pricing.v1 import pricing_service_pb2, pricing_service_pb2_grpc

APP = "kassa-test-dropped-conn"


class _BackendPid(pricing_service_pb2_grpc.PricingServiceServicer):
    """GetProducts answers with the Postgres backend pid serving it, as the one product's name."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def GetProducts(self, request, context):
        async with self._engine.connect() as conn:
            pid = (await conn.execute(sa.text("select pg_backend_pid()"))).scalar_one()
        product = pricing_service_pb2.Product(sku="pid", name=str(pid))
        return pricing_service_pb2.GetProductsResponse(products=[pricing_service_pb2.PricedProduct(product=product)])


@pytest_asyncio.fixture
async def served(settings: Settings) -> AsyncIterator[tuple[pricing_service_pb2_grpc.PricingServiceStub, AsyncEngine]]:
    engine = create_engine(settings.database_url, pool_size=2, application_name=APP)
    server: Server = await start_server(
        "127.0.0.1:0",
        [Registration(pricing_service_pb2_grpc.add_PricingServiceServicer_to_server, _BackendPid(engine), "p")],
        JwtVerifier(settings.jwt_secret),
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield pricing_service_pb2_grpc.PricingServiceStub(channel), engine
    finally:
        await channel.close()
        await server.stop(grace=1)
        await engine.dispose()


async def _terminate_backends(settings: Settings) -> int:
    other = create_engine(settings.database_url, pool_size=1, application_name="kassa-test-killer")
    try:
        async with other.connect() as conn:
            killed = await conn.execute(
                sa.text("select pg_terminate_backend(pid) from pg_stat_activity where application_name = :app"),
                {"app": APP},
            )
            return len(killed.all())
    finally:
        await other.dispose()


async def test_a_dropped_connection_is_unavailable_once_then_served_again(
    served, settings: Settings, customer_token: str
) -> None:
    md = bearer(customer_token)
    stub, _ = served
    first = await stub.GetProducts(pricing_service_pb2.GetProductsRequest(skus=["x"], currency_code="USD"), metadata=md)
    before = first.products[0].product.name

    assert await _terminate_backends(settings) >= 1

    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.GetProducts(pricing_service_pb2.GetProductsRequest(skus=["x"], currency_code="USD"), metadata=md)
    assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
    info = error_info(failed.value)
    assert info is not None and info.reason == "UNAVAILABLE"

    again = await stub.GetProducts(pricing_service_pb2.GetProductsRequest(skus=["x"], currency_code="USD"), metadata=md)
    assert again.products[0].product.name != before  # a new backend, not the one that was terminated
