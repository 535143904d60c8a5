"""Order service fixtures: the service started once per session on the shared test stack."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from helpers import engine_for_tests
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.localstack import StackEndpoints
from infra.config import Settings
from infra.events import connect
from infra.migrate import migrate
from infra.runner import running_service
from infra.server import Server
from kassa.order.v1.order_service_pb2_grpc import OrderServiceStub
from order.bootstrap import bootstrap


@pytest.fixture(scope="session")
def migrated(stack: StackEndpoints) -> StackEndpoints:
    """Only the order schema: these tests must not depend on other services' migrations."""
    migrate(stack.database_url, ["order"])
    return stack


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def order_server(settings: Settings) -> AsyncIterator[Server]:
    async with running_service(bootstrap, settings, "127.0.0.1:0") as server:
        yield server


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def order_channel(order_server: Server) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{order_server.port}") as channel:
        yield channel


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stub(order_channel: grpc.aio.Channel) -> OrderServiceStub:
    return OrderServiceStub(order_channel)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    async with engine_for_tests(settings.database_url, "order") as eng:
        yield eng


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def nats_js(settings: Settings) -> AsyncIterator[tuple[NATS, JetStreamContext]]:
    nc, js = await connect(str(settings.nats_url), "kassa-order-tests")
    yield nc, js
    await nc.close()
