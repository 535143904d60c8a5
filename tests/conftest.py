"""Shared fixtures: a real local stack (Postgres, Redis, NATS) per test process.

With pytest-xdist each worker starts its own stack on free ports under its own
temporary directory, so nothing collides with a running `make run` or with the
other worker. Set KASSA_TEST_DATABASE_URL / KASSA_TEST_REDIS_URL /
KASSA_TEST_NATS_URL to run against external servers instead.
"""

from __future__ import annotations

import os

# Before anything imports grpc: the tests spawn servers (Postgres as another user, the mesh) from processes where
# gRPC threads run, and gRPC's fork handlers in the child before exec crashed a Postgres start (SIGSEGV, "epoll_wait
# error: Bad file descriptor" in its log). Every child here execs at once, so it needs none of them.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

import uuid
from collections.abc import Iterator

import pytest
from helpers import external_stack, patched_asyncio, private_stack

from devstack.localstack import StackEndpoints
from infra.auth import ROLE_ADMIN, mint_service_token, mint_token
from infra.config import Settings
from infra.migrate import migrate


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A test whose fixtures patched asyncio's own functions fails before it runs, and one whose body did fails
    after it (``helpers.patched_asyncio``; a monkeypatch is undone only at teardown)."""
    _refuse_patched_asyncio()
    result = yield
    _refuse_patched_asyncio()
    return result


def _refuse_patched_asyncio() -> None:
    if patched := patched_asyncio():
        names = ", ".join(f"asyncio.{name}" for name in patched)
        pytest.fail(f"{names} patched for the whole session loop: inject the function into the code under test")


@pytest.fixture(scope="session")
def stack() -> Iterator[StackEndpoints]:
    external = external_stack()
    if external is not None:
        yield external
        return
    with private_stack() as endpoints:
        yield endpoints


@pytest.fixture(scope="session")
def migrated(stack: StackEndpoints) -> StackEndpoints:
    migrate(stack.database_url)
    return stack


@pytest.fixture(scope="session")
def settings(migrated: StackEndpoints) -> Settings:
    """Settings pointing at the test stack; service addresses are filled in by the tests that start them.

    Development mode, chosen explicitly (production is the default): the development secrets sign and verify.
    """
    return Settings.from_env(
        {
            "KASSA_ENV": "development",
            "KASSA_DATABASE_URL": migrated.database_url,
            "KASSA_REDIS_URL": migrated.redis_url,
            "KASSA_NATS_URL": migrated.nats_url,
            "KASSA_DB_POOL_SIZE": "5",
        }
    )


@pytest.fixture(scope="session")
def admin_token(settings: Settings) -> str:
    return mint_token(settings.jwt_secret, "admin-tests", role=ROLE_ADMIN)


@pytest.fixture(scope="session")
def service_token(settings: Settings) -> str:
    return mint_service_token(settings.service_secret, "tests")


@pytest.fixture
def customer_id() -> str:
    return f"cust-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def customer_token(settings: Settings, customer_id: str) -> str:
    return mint_token(settings.jwt_secret, customer_id)
