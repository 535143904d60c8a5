"""One pricing server for the integration tests of this directory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest_asyncio
from helpers import engine_for_tests
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.config import Settings
from infra.runner import running_service
from kassa.pricing.v1 import pricing_service_pb2_grpc
from pricing.bootstrap import bootstrap


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pricing_channel(settings: Settings) -> AsyncIterator[grpc.aio.Channel]:
    async with (
        running_service(bootstrap, settings, "127.0.0.1:0") as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield channel


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pricing_stub(pricing_channel: grpc.aio.Channel) -> pricing_service_pb2_grpc.PricingServiceStub:
    return pricing_service_pb2_grpc.PricingServiceStub(pricing_channel)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pricing_db(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine of the tests' own on the pricing service's database (a transaction held open, the audit log)."""
    async with engine_for_tests(settings.database_url, "pricing") as engine:
        yield engine
