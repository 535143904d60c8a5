"""Payment test fixtures: the sandbox over real HTTP, and the payment service started once per session."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
import pytest_asyncio
from helpers import engine_for_tests
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.localstack import StackEndpoints
from devstack.sandbox import SandboxConfig, running_sandbox
from devstack.sandbox.server import RunningSandbox
from infra import faults
from infra.config import Settings
from infra.migrate import migrate
from infra.runner import running_service
from kassa.payment.v1 import payment_service_pb2_grpc
from payment.biz.sweep import SweepPolicy
from payment.bootstrap import Sweeper, bootstrap

# tok_timeout keeps the client waiting this long; the payment service gives up after
# rpc_timeout_seconds - 1 = 1 s, so its timeout always fires first.
SANDBOX_TIMEOUT_SECONDS = 4.0
RPC_TIMEOUT_SECONDS = 2.0


@pytest.fixture(autouse=True)
def _no_faults_after() -> Iterator[None]:
    """A test that injects faults (the sandbox runs in this process too) leaves none behind."""
    yield
    faults.configure(None)


@pytest.fixture(scope="session")
def migrated(stack: StackEndpoints) -> StackEndpoints:
    """Only this service's schema: the payment tests must not depend on other services' migrations."""
    migrate(stack.database_url, ["payment"])
    return stack


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def sandbox(settings: Settings) -> AsyncIterator[RunningSandbox]:
    async with running_sandbox(settings, SandboxConfig(timeout_seconds=SANDBOX_TIMEOUT_SECONDS)) as running:
        yield running


@pytest.fixture(scope="session")
def payment_settings(settings: Settings, sandbox: RunningSandbox) -> Settings:
    return dataclasses.replace(settings, sandbox_url=sandbox.url, rpc_timeout_seconds=RPC_TIMEOUT_SECONDS)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def payment_channel(payment_settings: Settings) -> AsyncIterator[grpc.aio.Channel]:
    # Its sweeper stays out of the way of the tests that run sweeps themselves (test_sweeper.py).
    quiet = functools.partial(bootstrap, sweeper=Sweeper(SweepPolicy(), interval_seconds=3600))
    async with (
        running_service(quiet, payment_settings, "127.0.0.1:0") as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield channel


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def payment_stub(payment_channel: grpc.aio.Channel) -> payment_service_pb2_grpc.PaymentServiceStub:
    return payment_service_pb2_grpc.PaymentServiceStub(payment_channel)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def payment_db(settings: Settings) -> AsyncIterator[AsyncEngine]:
    async with engine_for_tests(settings.database_url, "payment") as engine:
        yield engine
