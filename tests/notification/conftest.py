"""Notification fixtures: the order and notification services on the shared test stack, and an SMTP sink.

The sink is the local stack's own (``devstack.smtp_sink``), run in this process on a free port with a mailbox
folder of its own, so these tests read exactly what the notification service sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from devstack.localstack import StackEndpoints, free_port
from devstack.smtp_sink import serve
from infra.config import Settings
from infra.migrate import migrate
from infra.runner import running_service
from infra.server import Server
from kassa.notification.v1.notification_service_pb2_grpc import NotificationServiceStub
from kassa.order.v1.order_service_pb2_grpc import OrderServiceStub
from notification.bootstrap import bootstrap as notification_bootstrap
from order.bootstrap import bootstrap as order_bootstrap


@pytest.fixture(scope="session")
def migrated(stack: StackEndpoints) -> StackEndpoints:
    migrate(stack.database_url, ["order", "notification"])
    return stack


@dataclasses.dataclass(frozen=True)
class Sink:
    url: str
    mail_dir: Path


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def sink(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sink]:
    mail_dir = tmp_path_factory.mktemp("mail")
    port = free_port()
    task = asyncio.create_task(serve(mail_dir, port))
    for _ in range(100):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            break
        await asyncio.sleep(0.05)
    yield Sink(f"smtp://127.0.0.1:{port}", mail_dir)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def order_server(settings: Settings) -> AsyncIterator[Server]:
    async with running_service(order_bootstrap, settings, "127.0.0.1:0") as server:
        yield server


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def notification_server(settings: Settings, order_server: Server, sink: Sink) -> AsyncIterator[Server]:
    configured = dataclasses.replace(
        settings,
        addrs={**settings.addrs, "order": f"127.0.0.1:{order_server.port}"},
        smtp_url=sink.url,
    )
    async with running_service(notification_bootstrap, configured, "127.0.0.1:0") as server:
        yield server


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def orders(order_server: Server) -> AsyncIterator[OrderServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{order_server.port}") as channel:
        yield OrderServiceStub(channel)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def notifications(notification_server: Server) -> AsyncIterator[NotificationServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{notification_server.port}") as channel:
        yield NotificationServiceStub(channel)
