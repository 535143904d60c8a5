"""``python -m bench.spans``: the CPU of recording and exporting one span, with the real SDK and exporter.

What it answers: what tracing costs a Kassa process per span, apart from everything else a call does, so a
change to :mod:`infra.tracing` can be measured without the noise of a whole mesh (``make bench`` is the judge
of the whole). The process is set up as a service's ``main`` does it (:func:`infra.tracing.setup` with
``KASSA_TRACE_DIR`` a temporary directory: the SDK provider, the sampler, the ``BatchSpanProcessor`` and
the JSON-lines exporter), and each "call" is the spans of a typical hop, made through infra.tracing's own
entry points:

- a REST request's SERVER span (:func:`~infra.tracing.server_span`, the gateway's) with its status,
- under it a gRPC CLIENT span (:func:`~infra.tracing.client_span`, the gateway's backends),
- under that the callee's gRPC SERVER span (:func:`~infra.tracing.traced_handler`, continuing the
  ``traceparent`` metadata), which names an order (:func:`~infra.tracing.annotate`) and runs
- ``--statements`` SQL statements through the SQLAlchemy events :func:`~infra.tracing.instrument_engine`
  listens to (a span each), and one outbox PRODUCER span (:func:`~infra.tracing.producer_span`).

Each of ``--rounds`` rounds makes ``--calls`` calls on one event loop and is timed twice: the main thread's CPU
(``time.thread_time``: creating, ending and queueing spans) and the whole process's CPU
(``time.process_time``, up to the exporter having written every span: so the export thread's too). The
report gives the medians per span: record, export (the difference) and total. ``--export-only`` times
``JsonLinesSpanExporter.export`` alone on batches of finished spans. ``--profile`` prints cProfile's top
functions of one more round (main thread only). Nothing is sent anywhere: the spans go to a temporary file,
deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import grpc
import sqlalchemy as sa

from bench.args import positive
from infra import tracing

__all__ = ["main"]

STATEMENTS = (
    "SELECT orders.order_id, orders.status, orders.version FROM order_svc.orders WHERE orders.order_id = %(id)s",
    "INSERT INTO order_svc.orders (order_id, session_id, status, total_minor, currency_code, version) "
    "VALUES (%(order_id)s, %(session_id)s, %(status)s, %(total_minor)s, %(currency_code)s, %(version)s)",
    "UPDATE order_svc.orders SET status=%(status)s, version=(order_svc.orders.version + %(version_1)s) "
    "WHERE order_svc.orders.order_id = %(order_id_1)s AND order_svc.orders.version = %(version_2)s",
    "WITH changed AS (UPDATE order_svc.orders SET status=%(status)s WHERE order_id = %(order_id)s RETURNING 1) "
    "INSERT INTO order_svc.outbox (event_id, topic, payload) SELECT %(event_id)s, %(topic)s, %(payload)s "
    "FROM changed",
)


class _Context:
    """What traced_handler reads of a grpc.aio servicer context."""

    def __init__(self, traceparent: str | None) -> None:
        self._metadata = (("authorization", "Bearer x"), (tracing.TRACEPARENT, traceparent or ""))

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def code(self) -> grpc.StatusCode | None:
        return None


class Workload:
    """The spans of one hop (module docstring), made through infra.tracing as the services make them."""

    def __init__(self, statements: int) -> None:
        self.engine = sa.create_engine("postgresql+psycopg://bench@127.0.0.1:1/bench")  # never connects
        tracing.instrument_engine(self.engine)
        self.statements = [STATEMENTS[n % len(STATEMENTS)] for n in range(statements)]
        self.spans_per_call = 3 + statements + 1

        async def inner(request: str, _context: Any) -> str:
            tracing.annotate(order_id=request)
            dispatch = self.engine.dispatch
            for statement in self.statements:
                context = SimpleNamespace()
                dispatch.before_cursor_execute(None, None, statement, {}, context, False)
                dispatch.after_cursor_execute(None, None, statement, {}, context, False)
            with tracing.producer_span("publish kassa.order.OrderCreated", tracing.current_traceparent()):
                pass
            return request

        method = "/kassa.order.v1.OrderService/CreateOrder"
        handler: grpc.RpcMethodHandler = grpc.unary_unary_rpc_method_handler(inner)
        self.server = cast(tracing.AioUnary, tracing.traced_handler(method, handler).unary_unary)

    async def call(self, n: int) -> None:
        with tracing.server_span("POST /v1/checkout/confirm", None, {"http.request.method": "POST"}) as span:
            with tracing.client_span("kassa.order.v1.OrderService/CreateOrder", {"rpc.system": "grpc"}):
                await self.server(f"o-{n}", cast(Any, _Context(tracing.current_traceparent())))
            tracing.http_status(span, 200)

    async def run(self, calls: int) -> None:
        for n in range(calls):
            await self.call(n)


def _flush() -> None:
    provider = tracing._installed["provider"]
    if not provider.force_flush(60_000):
        raise SystemExit("the span exporter did not finish")


def _round(loop: asyncio.AbstractEventLoop, workload: Workload, calls: int) -> tuple[float, float]:
    """CPU seconds of one round: (main thread, whole process up to every span exported)."""
    _flush()
    process, thread = time.process_time(), time.thread_time()
    loop.run_until_complete(workload.run(calls))
    recorded = time.thread_time() - thread
    _flush()
    return recorded, time.process_time() - process


def _export_only(spans: int, rounds: int) -> list[float]:
    """µs per span of JsonLinesSpanExporter.export alone, on batches of 512 finished spans."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "order"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    saved = tracing.tracer
    tracing.tracer = provider.get_tracer("kassa")
    try:
        workload = Workload(4)
        asyncio.run(workload.run(max(1, spans // workload.spans_per_call)))
    finally:
        tracing.tracer = saved
    finished = list(memory.get_finished_spans())
    batches = [finished[i : i + 512] for i in range(0, len(finished), 512)]
    results = []
    with tempfile.TemporaryDirectory(prefix="kassa-bench-spans-") as tmp:
        exporter = tracing.JsonLinesSpanExporter(Path(tmp) / "order-1.jsonl", max_bytes=1 << 40)
        for _ in range(rounds):
            start = time.thread_time()
            for batch in batches:
                exporter.export(batch)
            results.append((time.thread_time() - start) / len(finished) * 1e6)
        exporter.shutdown()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spans", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=positive(int, 1_000_000), default=2000, help="calls per round")
    parser.add_argument("--rounds", type=positive(int, 1000), default=7)
    parser.add_argument("--statements", type=positive(int, 100), default=4, help="SQL statements per call")
    parser.add_argument("--export-only", action="store_true", help="also time the exporter alone")
    parser.add_argument("--profile", action="store_true", help="cProfile one more round (main thread)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="kassa-bench-spans-") as tmp:
        if tracing.setup("order", {"KASSA_TRACE_DIR": tmp, "OTEL_SERVICE_NAME": "order"}) is None:
            raise SystemExit("tracing did not start")
        workload = Workload(args.statements)
        spans = args.calls * workload.spans_per_call
        loop = asyncio.new_event_loop()
        try:
            _round(loop, workload, min(args.calls, 200))  # warm-up: caches, first file write
            recorded, total = [], []
            for _ in range(args.rounds):
                thread_s, process_s = _round(loop, workload, args.calls)
                recorded.append(thread_s / spans * 1e6)
                total.append(process_s / spans * 1e6)
            if args.profile:
                profile = cProfile.Profile()
                profile.enable()
                loop.run_until_complete(workload.run(args.calls))
                profile.disable()
                pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(25)
        finally:
            loop.close()
            tracing.shutdown()
        lines = sum(len(path.read_text(encoding="utf-8").splitlines()) for path in Path(tmp).glob("*.jsonl"))

    record, whole = statistics.median(recorded), statistics.median(total)
    print(f"spans: {spans} per round ({workload.spans_per_call} per call), {args.rounds} rounds; {lines} lines written")
    print(f"µs per span (median): record {record:.2f}, export {whole - record:.2f}, total {whole:.2f}")
    print("  record per round: " + " ".join(f"{v:.2f}" for v in recorded))
    print("  total per round:  " + " ".join(f"{v:.2f}" for v in total))
    if args.export_only:
        only = _export_only(args.calls * workload.spans_per_call, args.rounds)
        print(f"JsonLinesSpanExporter.export alone: {statistics.median(only):.2f} µs per span (median)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
