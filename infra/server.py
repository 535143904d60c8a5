"""grpc.aio server bootstrap shared by every service.

One interceptor does the per-call plumbing: it admits the call (when the service has an
:class:`~infra.admission.Admission`: new work may wait in its queue first; a refusal is UNAVAILABLE with
ErrorInfo and google.rpc.RetryInfo), verifies the caller's token into
:data:`infra.auth.identity_var` (a call without one is UNAUTHENTICATED before any servicer runs:
every Kassa RPC has a caller, so a new one can't be left open by mistake), carries a request id in
:data:`infra.logs.request_id_var`, and turns a :class:`~kernel.errors.DomainError`
raised anywhere below the servicer into a gRPC status with ErrorInfo. It also decodes the request
itself, so bytes that are no valid message are INVALID_ARGUMENT (field "request"). Servicers
therefore only translate protobuf ↔ domain.

Every server gets the standard health service (per-service status) and server
reflection, so ``grpcurl -plaintext 127.0.0.1:50051 list`` works. With mutual TLS configured
(``KASSA_GRPC_TLS_*``, infra.tls) the port asks every client for a certificate the CA signed; a
probe that can't present one (the kubelet's native gRPC probe) then asks a plaintext port that
serves only the health service (``KASSA_GRPC_HEALTH_ADDR``). The same interceptor records each call's
latency and status code (infra.metrics), and ``start_server(metrics_addr=…)`` serves ``/metrics`` beside the port.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy import exc as sa_exc

from infra.admission import Admission, Overloaded
from infra.auth import JwtVerifier, Unauthenticated, identity_var
from infra.grpc_errors import abort_with
from infra.logs import request_id_var
from infra.metrics import MetricsServer, start_metrics_server, timed
from infra.tracing import UNTRACED_METHODS, AioUnary, annotate_message, traced_handler
from kernel import errors

__all__ = ["REQUEST_FIELD", "Registration", "Server", "run_until_signalled", "start_server"]

log = logging.getLogger("kassa.server")

_UNAUTHENTICATED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
_DB_UNAVAILABLE = errors.Unavailable("the database is unreachable or dropped the connection; retry")
_NO_CREDENTIALS = "missing credentials: send 'authorization: Bearer <token>'"


@dataclass(frozen=True)
class Registration:
    """A servicer and the generated function that adds it, with its full service name."""

    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: Any
    service_name: str


class WrappingInterceptor(grpc.aio.ServerInterceptor):
    """Wraps the unary handler of each method it ``wraps`` once: a method's handler never changes, so not per call."""

    def __init__(self) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or not self.wraps(method):
            return handler
        wrapped = self._wrapped[method] = self._wrap(method, handler)
        return wrapped

    def wraps(self, method: str) -> bool:
        return True

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        raise NotImplementedError


class TracingInterceptor(WrappingInterceptor):
    """A SERVER span per call (infra.tracing.traced_handler), health checks and reflection aside."""

    def wraps(self, method: str) -> bool:
        return not method.startswith(UNTRACED_METHODS)

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        return traced_handler(method, handler)


class KassaInterceptor(WrappingInterceptor):
    def __init__(self, verifier: JwtVerifier, admission: Admission | None = None) -> None:
        super().__init__()
        self._verifier = verifier
        self._admission = admission

    def wraps(self, method: str) -> bool:
        return not method.startswith(_UNAUTHENTICATED_PREFIXES)

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        inner = cast(AioUnary, handler.unary_unary)
        decode = handler.request_deserializer
        verifier = self._verifier
        admission = self._admission

        async def serve(raw: Any, context: grpc.aio.ServicerContext) -> Any:
            metadata = dict(context.invocation_metadata() or ())
            request_id_var.set(str(metadata.get("x-request-id") or uuid.uuid4().hex))
            try:
                # authorization is a text key (not -bin): its value is a str.
                identity = await verifier.authenticate(cast(str | None, metadata.get("authorization")))
                if identity is None:
                    raise Unauthenticated(_NO_CREDENTIALS)
                identity_var.set(identity)
                request = _decoded(decode, raw)
                annotate_message(request)  # the ids it names, on its span and log lines
                reply = await inner(request, context)
                annotate_message(reply)
                return reply
            except errors.DomainError as exc:
                await abort_with(context, exc)
            except asyncio.CancelledError:
                raise
            except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
                # The database went away or dropped this connection (restart, failover, network): transient.
                # SQLAlchemy has already invalidated the pool, so a retry gets a fresh connection.
                log.warning("database unavailable in %s: %s", method, type(exc.orig).__name__)
                await abort_with(context, _DB_UNAVAILABLE)
            except Exception:
                # grpc's own abort() raises an internal exception we must let through.
                if context.code() is not None:
                    raise
                log.exception("unhandled error in %s", method)
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")
            return None

        async def admitted(request: Any, context: grpc.aio.ServicerContext) -> Any:
            assert admission is not None
            try:
                admitted_at = await admission.acquire(method, budget_s=context.time_remaining())
            except Overloaded as exc:
                await abort_with(context, _at_capacity(exc))
                return None  # abort raised; not admitted, so nothing to give back
            try:
                return await serve(request, context)
            finally:
                admission.release(admitted_at)

        # The request arrives as bytes and is decoded in serve(): bytes that are no message of the request's
        # type (corrupt wire format, a string that is not UTF-8, groups nested past the parser's limit) are
        # INVALID_ARGUMENT, not the UNKNOWN grpc answers (with the exception's text) when its deserializer raises.
        return grpc.unary_unary_rpc_method_handler(
            timed(method, serve if admission is None else admitted),
            request_deserializer=None,
            response_serializer=handler.response_serializer,
        )


def _at_capacity(exc: Overloaded) -> errors.Unavailable:
    """UNAVAILABLE with RetryInfo: the client backs off for the time the queue needs to drain, then retries."""
    return errors.Unavailable(
        "this service is at capacity; retry after the delay given",
        metadata={
            "why": exc.why,
            "in_flight": str(exc.in_flight),
            "waiting": str(exc.waiting),
            "retry_after_seconds": exc.retry_after_header,
        },
        retry_after_s=exc.retry_after_s,
    )


# What an INVALID_ARGUMENT names when the request's bytes are not a message at all.
REQUEST_FIELD = "request"


def _decoded(decode: Callable[[bytes], Any] | None, raw: Any) -> Any:
    if decode is None:
        return raw
    try:
        return decode(raw)
    except (DecodeError, ValueError, RecursionError) as exc:
        problem = str(exc).rsplit(": ", 1)[-1] or "it can't be parsed"
        raise errors.InvalidArgument(REQUEST_FIELD, f"is not a valid request message ({problem})") from exc


class Server:
    """A started grpc.aio server with its health servicer; ``port`` is the bound port."""

    def __init__(self, server: grpc.aio.Server, health_servicer: health.aio.HealthServicer, port: int,
                 names: list[str], *, health_server: grpc.aio.Server | None = None,
                 health_port: int | None = None, metrics: MetricsServer | None = None) -> None:  # fmt: skip
        self.server = server
        self.health = health_servicer
        self.port = port
        self.names = names
        self.health_server = health_server
        self.health_port = health_port
        # The /metrics endpoint (infra.metrics), when the server was started with a metrics address.
        self.metrics = metrics

    @property
    def metrics_port(self) -> int | None:
        return None if self.metrics is None else self.metrics.port

    async def stop(self, grace: float = 5.0) -> None:
        """Report NOT_SERVING first so balancers drain us, then stop accepting and finish calls in flight."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.health_server is not None:
            await self.health_server.stop(0)
        if self.metrics is not None:
            await self.metrics.stop()


async def start_server(
    addr: str,
    registrations: Iterable[Registration],
    verifier: JwtVerifier,
    admission: Admission | None = None,
    *,
    interceptors: Iterable[grpc.aio.ServerInterceptor] = (),
    credentials: grpc.ServerCredentials | None = None,
    health_addr: str | None = None,
    metrics_addr: str | None = None,
) -> Server:
    """Bind ``addr`` (``127.0.0.1:0`` picks a free port) and start serving.

    ``interceptors`` run inside :class:`KassaInterceptor`: the caller is authenticated, the request decoded,
    and what they raise becomes the status like anything a servicer raises. ``credentials``: serve TLS
    (infra.tls.MutualTls.server_credentials) instead of plaintext. ``health_addr``: also serve the health
    service, and nothing else, in plaintext there. ``metrics_addr``: serve ``/metrics`` (infra.metrics) there.
    """
    server = grpc.aio.server(
        # The trace's server span first, so it covers admission and authentication too (infra.tracing).
        interceptors=[TracingInterceptor(), KassaInterceptor(verifier, admission), *interceptors],
        options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 4 * 1024 * 1024)],
    )
    regs = list(registrations)
    for reg in regs:
        reg.add_to_server(reg.servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [reg.service_name for reg in regs]
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    port = server.add_insecure_port(addr) if credentials is None else server.add_secure_port(addr, credentials)
    if port == 0:
        raise RuntimeError(f"could not bind {addr}")
    health_server: grpc.aio.Server | None = None
    health_port: int | None = None
    if health_addr:
        health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
        health_port = health_server.add_insecure_port(health_addr)
        if health_port == 0:
            raise RuntimeError(f"could not bind the health address {health_addr}")
        await health_server.start()
    metrics = None
    if metrics_addr:
        try:
            metrics = start_metrics_server(metrics_addr)
        except OSError as exc:
            raise RuntimeError(f"could not bind the metrics address {metrics_addr}: {exc}") from exc
    await server.start()
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return Server(
        server, health_servicer, port, names, health_server=health_server, health_port=health_port, metrics=metrics
    )


async def run_until_signalled() -> None:
    """Wait for SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
