"""One promotion server (with its outbox publisher) and a database handle for the tests here."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest_asyncio
from helpers import engine_for_tests
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.config import Settings
from infra.runner import running_service
from kassa.promotion.v1 import promotion_service_pb2_grpc
from promotion.bootstrap import bootstrap


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def promotion_channel(settings: Settings) -> AsyncIterator[grpc.aio.Channel]:
    async with (
        running_service(bootstrap, settings, "127.0.0.1:0") as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield channel


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def promotion_stub(promotion_channel: grpc.aio.Channel) -> promotion_service_pb2_grpc.PromotionServiceStub:
    return promotion_service_pb2_grpc.PromotionServiceStub(promotion_channel)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def promotion_db(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """Read-only peeks at counters and the outbox, which no RPC exposes."""
    async with engine_for_tests(settings.database_url, "promotion") as engine:
        yield engine
