"""Small helpers for tests (import as `from helpers import ...`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from infra.localstack import LocalStack, StackEndpoints, free_ports


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def unique(prefix: str) -> str:
    """Ids unique per test, so tests sharing a database never see each other's rows."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def private_stack() -> Iterator[StackEndpoints]:
    """Real Postgres, Redis and NATS on free loopback ports, in a temporary directory removed afterwards."""
    pg_port, redis_port, nats_port = free_ports(3)
    # Not under pytest's own temp folder: pytest resets that folder to 0700 whenever another pytest
    # process starts, which would lock out the unprivileged user Postgres runs as under root.
    data_dir = Path(tempfile.mkdtemp(prefix="kassa-test-stack-"))
    local = LocalStack(data_dir, pg_port=pg_port, redis_port=redis_port, nats_port=nats_port, log=lambda *_: None)
    try:
        yield local.start()
    finally:
        local.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def external_stack() -> StackEndpoints | None:
    """Servers named by KASSA_TEST_{DATABASE,REDIS,NATS}_URL, when all three are set."""
    urls = [os.environ.get(f"KASSA_TEST_{n}_URL") for n in ("DATABASE", "REDIS", "NATS")]
    if not all(urls):
        return None
    db, redis, nats = urls
    return StackEndpoints(database_url=str(db), redis_url=str(redis), nats_url=str(nats))
