"""Stream durability settings: replicas from KASSA_NATS_REPLICAS, a duplicate window longer than the outbox lease."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from nats.js.api import StorageType
from nats.js.errors import APIError, NotFoundError

from devstack.localstack import StackEndpoints
from infra import events
from infra.events import DUPLICATE_WINDOW_SECONDS, REPLICAS_ENV, connect, ensure_streams, stream_config, stream_replicas
from infra.outbox import OutboxPublisher, outbox_table

pytestmark = pytest.mark.integration


def test_replicas_default_to_one_and_follow_the_setting() -> None:
    assert stream_replicas({}) == 1
    assert stream_replicas({REPLICAS_ENV: "3"}) == 3
    for bad in ("0", "6", "three", "-1"):
        with pytest.raises(ValueError, match=REPLICAS_ENV):
            stream_replicas({REPLICAS_ENV: bad})


def test_the_stream_config_carries_replicas_window_and_file_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REPLICAS_ENV, "3")
    config = stream_config("order")
    assert config.num_replicas == 3
    assert config.duplicate_window == DUPLICATE_WINDOW_SECONDS
    assert config.storage == StorageType.FILE
    assert config.as_dict()["num_replicas"] == 3
    assert stream_config("order", replicas=1).num_replicas == 1


def test_the_duplicate_window_outlasts_the_default_lease_deadline_and_poll() -> None:
    # The publisher's own guard: a row republished after its lease ran out is still deduplicated.
    table = outbox_table(sa.MetaData(schema="order"))
    OutboxPublisher(None, table, None)  # type: ignore[arg-type]  # the defaults fit
    with pytest.raises(ValueError, match="duplicate window"):
        OutboxPublisher(None, table, None, lease_seconds=DUPLICATE_WINDOW_SECONDS - 5)  # type: ignore[arg-type]


@pytest_asyncio.fixture(loop_scope="session")
async def private_service(stack: StackEndpoints, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, Any]]:
    """A service name of this test's own, with a stream name, on the test stack's NATS (stream deleted after)."""
    service = f"ev{uuid.uuid4().hex[:8]}"
    monkeypatch.setitem(events.STREAMS, service, f"KASSA_{service.upper()}")
    nc, js = await connect(stack.nats_url, "events-tests")
    try:
        yield service, js
    finally:
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(events.STREAMS[service])
        await nc.close()


async def test_ensure_streams_applies_one_replica_and_the_window(private_service, monkeypatch) -> None:
    service, js = private_service
    monkeypatch.setenv(REPLICAS_ENV, "1")
    await ensure_streams(js, [service], duplicate_window=10)
    await ensure_streams(js, [service])  # an existing stream is brought to the new window

    info = await js.stream_info(events.STREAMS[service])

    assert info.config.num_replicas == 1
    assert info.config.duplicate_window == DUPLICATE_WINDOW_SECONDS
    assert info.config.storage == StorageType.FILE


async def test_more_replicas_than_servers_is_refused_not_ignored(private_service, monkeypatch) -> None:
    service, js = private_service
    monkeypatch.setenv(REPLICAS_ENV, "3")

    with pytest.raises(APIError, match="replicas"):
        await ensure_streams(js, [service])
