"""The outside faults of a run, done to the private stack it started (never to anything else).

``kill`` sends SIGKILL to the current pid of one mesh process (the supervisor brings it back);
``redis_flush`` empties Redis (FLUSHALL); ``redis_restart`` and ``nats_restart`` kill the server and
start it again on its port and data (``LocalStack.restart``); ``pg_terminate`` ends every other
backend of the database (``pg_terminate_backend``), as a failover or an idle-connection reaper would.
Blocking steps run in a thread so the customers keep going meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass

from chaos.plan import Action
from chaos.stack import ChaosStack
from devstack.check import sqlalchemy_to_libpq

__all__ = ["Fired", "Injector"]


@dataclass(frozen=True)
class Fired:
    action: Action
    at_s: float
    ok: bool
    detail: str


class Injector:
    def __init__(self, stack: ChaosStack, started: float) -> None:
        self._stack = stack
        self._started = started
        self.fired: list[Fired] = []

    async def fire(self, action: Action) -> Fired:
        at = time.monotonic() - self._started
        try:
            detail = await self._do(action)
            fired = Fired(action, at, True, detail)
        except Exception as exc:
            fired = Fired(action, at, False, f"{type(exc).__name__}: {exc}")
        self.fired.append(fired)
        return fired

    async def _do(self, action: Action) -> str:
        stack = self._stack
        if action.kind == "kill":
            # The live process, not one that just died of an injected crash and is being restarted.
            pid = await asyncio.to_thread(stack.mesh.wait_healthy, action.target, 60.0)
            os.kill(pid, signal.SIGKILL)
            return f"SIGKILL pid {pid}"
        if action.kind == "redis_flush":
            import redis.asyncio as redis

            client = redis.from_url(stack.endpoints.redis_url, socket_timeout=5)
            try:
                await client.flushall()
            finally:
                await client.aclose()
            return "FLUSHALL"
        if action.kind in ("redis_restart", "nats_restart"):
            server = action.kind.removesuffix("_restart")
            pid = await asyncio.to_thread(stack.local.restart, server)
            return f"{server} back as pid {pid}"
        if action.kind == "pg_terminate":
            ended = await asyncio.to_thread(_terminate_backends, stack.endpoints.database_url)
            return f"{ended} backends terminated"
        raise ValueError(f"unknown action {action.kind}")


def _terminate_backends(database_url: str) -> int:
    import psycopg

    with psycopg.connect(sqlalchemy_to_libpq(database_url), autocommit=True, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        ).fetchone()
    return int(row[0]) if row else 0
