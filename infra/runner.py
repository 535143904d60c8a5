"""Runs one service: bootstrap, serve, background workers, graceful stop.

Every ``<service>/__main__.py`` is ``runner.main("warehouse", bootstrap)``;
tests use :func:`running_service` to start the same thing in-process on a free
port against the real local stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
import uvloop

from infra import faults, heap, tracing
from infra.admission import Admission
from infra.auth import JwksKeys, JwtVerifier
from infra.config import ConfigError, Settings
from infra.logs import setup_logging
from infra.server import Registration, Server, run_until_signalled, start_server

__all__ = ["STOP_GRACE_SECONDS", "App", "Bootstrap", "main", "running_service"]

log = logging.getLogger("kassa.runner")

# How long a stopping server lets calls in flight finish (after reporting NOT_SERVING); deploy/k8s's
# terminationGracePeriodSeconds leaves room for it and for what a service's bootstrap waits for on close.
STOP_GRACE_SECONDS = 3.0


@dataclass
class App:
    """What a service's bootstrap assembles: servicers to serve and workers to run beside them."""

    registrations: list[Registration]
    workers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Edge services queue new work beyond a number of calls in flight, refusing it by queueing delay (infra.admission).
    admission: Admission | None = None
    # Run inside the server's own interceptor, for the caller it authenticated (infra.audit's).
    interceptors: list[grpc.aio.ServerInterceptor] = field(default_factory=list)


Bootstrap = Callable[[Settings, AsyncExitStack], Awaitable[App]]


def verifier_for(settings: Settings) -> JwtVerifier:
    """Customer tokens by KASSA_JWT_SECRET(_PREVIOUS) or the JWKS; service tokens by KASSA_SERVICE_SECRET(_PREVIOUS)."""
    jwks = JwksKeys(settings.jwt_jwks_url, ttl_seconds=settings.jwt_jwks_ttl_seconds) if settings.jwt_jwks_url else None
    return JwtVerifier(
        settings.jwt_secrets,
        service_secrets=settings.service_secrets,
        jwks=jwks,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        admin_claim=settings.jwt_admin_claim,
    )


@contextlib.asynccontextmanager
async def running_service(
    bootstrap: Bootstrap, settings: Settings, addr: str, *, run_workers: bool = True, metrics_addr: str | None = None
) -> AsyncIterator[Server]:
    """Bootstrap, bind ``addr`` and serve until the block exits; then stop and clean up everything.

    ``metrics_addr``: also serve ``/metrics`` there (``main`` always does, on the gRPC port + 1000)."""
    async with AsyncExitStack() as stack:
        app = await bootstrap(settings, stack)
        server = await start_server(
            addr,
            app.registrations,
            verifier_for(settings),
            app.admission,
            interceptors=app.interceptors,
            credentials=settings.grpc_tls.server_credentials() if settings.grpc_tls else None,
            health_addr=settings.grpc_health_addr,
            metrics_addr=metrics_addr,
        )
        # Every worker is an async function: its call is a coroutine, which create_task wants.
        tasks: list[asyncio.Task[None]] = (
            [asyncio.create_task(cast(Coroutine[Any, Any, None], w())) for w in app.workers] if run_workers else []
        )
        try:
            yield server
        finally:
            await server.stop(grace=STOP_GRACE_SECONDS)
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t


async def _serve(service: str, bootstrap: Bootstrap, settings: Settings, addr: str, metrics_addr: str) -> None:
    async with running_service(bootstrap, settings, addr, metrics_addr=metrics_addr) as server:
        log.info(
            "%s listening on %s (metrics on %s)",
            service,
            addr.rsplit(":", 1)[0] + f":{server.port}",
            metrics_addr.rsplit(":", 1)[0] + f":{server.metrics_port}",
        )
        heap.settle()
        await run_until_signalled()
        log.info("%s stopping", service)


def main(service: str, bootstrap: Bootstrap) -> None:
    setup_logging(service)
    tracing.setup(service)
    try:
        # The service's own database when KASSA_<SERVICE>_DATABASE_URL names one.
        settings = Settings.from_env().for_service(service)
        settings.require("database_url", "redis_url", "nats_url")
        # One of the service's replicas (KASSA_REPLICA) when its KASSA_<SERVICE>_ADDR lists several.
        addr = settings.listen_addr(service)
        # /metrics on the gRPC port + 1000, or the replica's entry of KASSA_<SERVICE>_METRICS_ADDR.
        metrics_addr = settings.metrics_listen_addr(service, addr)
        faults.load()
    except (ConfigError, faults.FaultConfigError) as exc:
        raise SystemExit(f"{service}: {exc}") from exc
    uvloop.run(_serve(service, bootstrap, settings, addr, metrics_addr))
