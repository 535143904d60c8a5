"""Prometheus metrics shared by every process: RPCs, the outbox, admission, DLQs, and the ``/metrics`` endpoint.

Every gRPC service serves ``/metrics`` over plain HTTP on its gRPC port + 1000 (checkout 51051, …; replica k
on its own replica port + 1000), or where ``KASSA_<SERVICE>_METRICS_ADDR`` says (``infra.config``). That port
is internal and unauthenticated, like the services' gRPC ports it sits beside; the gateway serves ``/metrics``
on its public port and asks for an admin token there (``gateway.app``). Service-specific families (the
checkout funnel, payment outcomes, reservations, stock drift, dead letters) live beside the code that moves
them; this module holds what every service shares.

Cost: a metric update is a lock and an add in the process (prometheus_client, no I/O). A gRPC call makes two
(one counter, one histogram observation), through children resolved once per method and status code, not per
call. Gauges that need a query (outbox backlog, DLQ depth, stuck sessions) are refreshed by a background loop
(:class:`GaugeRefresher`, every :data:`REFRESH_SECONDS`), never on the request path, and never on a scrape: a
scrape is answered from memory by the exporter's own thread, even while the event loop is busy.

Label values are bounded: gRPC methods and status codes, route templates (never raw paths), provider names and
their decline codes, error reasons from ``kernel.errors.Reason``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import grpc
import prometheus_client
from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app

__all__ = [
    "ADMISSION_REFUSALS",
    "DLQ_DEPTH",
    "DLQ_OLDEST_AGE",
    "GRPC_HANDLED",
    "GRPC_HANDLING_SECONDS",
    "LATENCY_BUCKETS",
    "METRICS_PORT_OFFSET",
    "OUTBOX_BACKLOG",
    "OUTBOX_OLDEST_AGE",
    "OUTBOX_PUBLISHED",
    "OUTBOX_PUBLISH_FAILURES",
    "OUTBOX_PUBLISH_LAG",
    "REFRESH_SECONDS",
    "GaugeRefresher",
    "MetricsServer",
    "RpcMetrics",
    "exposition",
    "start_metrics_server",
]

log = logging.getLogger("kassa.metrics")

# A gRPC service's metrics port is its gRPC port + this (DESIGN.md §5): checkout 50051 -> 51051.
METRICS_PORT_OFFSET = 1000
# How often the gauges that need a query are refreshed (Prometheus scrapes every 15-30 s).
REFRESH_SECONDS = 15.0

# Seconds; a Kassa RPC takes ~1-2 ms, ConfirmCheckout a few hundred ms, and the deadline is 5 s (15 s for confirm).
LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)

# -- RPCs (server side; the names and labels of go-grpc-prometheus, so existing dashboards read them) ---------
GRPC_HANDLED = Counter(
    "grpc_server_handled",
    "gRPC calls completed by this server, by method and status code",
    ["grpc_service", "grpc_method", "grpc_code"],
)
GRPC_HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from a call's arrival to its answer, admission wait included, by method",
    ["grpc_service", "grpc_method"],
    buckets=LATENCY_BUCKETS,
)

# -- admission control (infra.admission: checkout's gRPC edge and the gateway) ----------------------------
ADMISSION_REFUSALS = Counter(
    "kassa_admission_refusals",
    "Calls refused for load by admission control, by why (queue_delay, max_wait, hard_limit)",
    ["why"],
)

# -- the outbox (infra.outbox): what each service still has to publish, and how late ------------------------
OUTBOX_PUBLISHED = Counter("kassa_outbox_published", "Outbox events published to JetStream", ["service"])
OUTBOX_PUBLISH_FAILURES = Counter(
    "kassa_outbox_publish_failures", "Outbox events whose publish failed (retried later)", ["service"]
)
OUTBOX_PUBLISH_LAG = Histogram(
    "kassa_outbox_publish_lag_seconds",
    "From an event's commit to its PubAck",
    ["service"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
OUTBOX_BACKLOG = Gauge("kassa_outbox_backlog", "Outbox events not yet sent (refreshed every 15 s)", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "kassa_outbox_oldest_unsent_age_seconds", "Age of the oldest outbox event not yet sent (0: none)", ["service"]
)

# -- dead-letter queues: checkout's failed compensations, notification's dead letters -----------------------
DLQ_DEPTH = Gauge(
    "kassa_dlq_depth",
    "Entries in a dead-letter queue, by queue and status (pending: being retried; dead: parked for an operator)",
    ["queue", "status"],
)
DLQ_OLDEST_AGE = Gauge(
    "kassa_dlq_oldest_age_seconds",
    "Age of the oldest entry in a dead-letter queue, by status (0: none)",
    ["queue", "status"],
)


class RpcMetrics:
    """What :class:`infra.server.KassaInterceptor` records per call: one histogram observation and one counter.

    The children (prometheus_client's per-label-set objects) are looked up once per method and code and kept,
    so a call costs two locked adds and no label hashing in prometheus_client.
    """

    def __init__(self, method: str) -> None:
        # "/kassa.checkout.v1.CheckoutService/ConfirmCheckout" -> service, method
        _, _, rest = method.partition("/")
        self._service, _, self._method = rest.rpartition("/")
        self._latency = GRPC_HANDLING_SECONDS.labels(self._service, self._method)
        self._handled: dict[grpc.StatusCode, prometheus_client.metrics.Counter] = {}

    def done(self, code: grpc.StatusCode, seconds: float) -> None:
        self._latency.observe(seconds)
        child = self._handled.get(code)
        if child is None:
            child = self._handled[code] = GRPC_HANDLED.labels(self._service, self._method, code.name)
        child.inc()


def status_code(context: grpc.aio.ServicerContext, failed: BaseException | None) -> grpc.StatusCode:
    """The status a finished call answered with: what abort()/set_code() set, else OK (or CANCELLED/UNKNOWN)."""
    code = context.code()
    if code is not None:
        return code if isinstance(code, grpc.StatusCode) else _CODES.get(code, grpc.StatusCode.UNKNOWN)
    if failed is None:
        return grpc.StatusCode.OK
    return grpc.StatusCode.CANCELLED if isinstance(failed, asyncio.CancelledError) else grpc.StatusCode.UNKNOWN


_CODES: dict[object, grpc.StatusCode] = {c.value[0]: c for c in grpc.StatusCode}


def timed(
    method: str, call: Callable[[object, grpc.aio.ServicerContext], Awaitable[object]]
) -> Callable[[object, grpc.aio.ServicerContext], Awaitable[object]]:
    """``call`` (a unary handler) with its latency and status code recorded under ``method``."""
    metrics = RpcMetrics(method)
    clock = time.perf_counter

    async def handler(request: object, context: grpc.aio.ServicerContext) -> object:
        started = clock()
        failed: BaseException | None = None
        try:
            return await call(request, context)
        except BaseException as exc:
            failed = exc
            raise
        finally:
            metrics.done(status_code(context, failed), clock() - started)

    return handler


class GaugeRefresher:
    """Runs ``probes`` (async functions that query something and set gauges) every ``interval`` seconds.

    A service's bootstrap adds it as a worker. A probe that fails is logged and tried again next round; the
    gauges it sets keep their last value meanwhile (the exporter has no way to say "unknown" but absence, and an
    alert on a gauge that vanished on a database blip would flap).
    """

    def __init__(self, probes: Iterable[Callable[[], Awaitable[None]]], interval: float = REFRESH_SECONDS) -> None:
        self._probes = list(probes)
        self._interval = interval

    async def refresh(self) -> None:
        """One round of every probe, side by side."""
        results = await asyncio.gather(*(probe() for probe in self._probes), return_exceptions=True)
        for probe, result in zip(self._probes, results, strict=True):
            if isinstance(result, Exception):
                log.warning("metrics probe %s failed: %r", getattr(probe, "__qualname__", probe), result)

    async def run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self._interval)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log: Prometheus scrapes every 15 s."""


class _MetricsHttpServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in progress never holds the process up


def _only_metrics(app: Any) -> Any:
    """The exporter's WSGI app on ``/metrics`` only: anything else is 404. prometheus_client answers every path,
    so a port taken by mistake (a free port handed out twice) would pass for any HTTP health check."""

    def serve(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") in ("/metrics", "/metrics/"):
            return app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"only /metrics is served here\n"]

    return serve


class MetricsServer:
    """The ``/metrics`` HTTP endpoint of a process, served on a daemon thread (scrapes never wait for the loop)."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self.port: int = httpd.server_port

    async def stop(self) -> None:
        """Stop serving (``shutdown`` waits for the serving loop's next poll: off the event loop)."""
        await asyncio.to_thread(self._httpd.shutdown)
        self._httpd.server_close()
        self._thread.join(timeout=1.0)


def start_metrics_server(addr: str) -> MetricsServer:
    """Serve the default registry at ``http://<addr>/metrics`` (``127.0.0.1:0`` picks a free port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"metrics address must be host:port, got {addr!r}")
    host = host.strip("[]") or "127.0.0.1"
    prometheus_client.disable_created_metrics()  # no *_created series: a third of the exposition, of no use here

    class Server(_MetricsHttpServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    httpd = make_server(host, int(port), _only_metrics(make_wsgi_app()), Server, handler_class=_Quiet)
    thread = threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return MetricsServer(httpd, thread)


def exposition() -> tuple[bytes, str]:
    """The default registry in the text format, and its content type (for a server of our own: the gateway)."""
    prometheus_client.disable_created_metrics()
    return prometheus_client.generate_latest(), prometheus_client.CONTENT_TYPE_LATEST
