"""infra.tracing and infra.trace_view: which exporter the environment picks (and OTLP reaching a collector),
which spans are recorded, the JSON-lines files and the trees read back from them, ids on spans and log lines."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from infra import tracing
from infra.logs import JsonFormatter, log_ids_var
from infra.trace_view import find_traces, render
from kassa.checkout.v1 import checkout_pb2, checkout_service_pb2


def provider_with(exporter: SpanExporter, service: str = "checkout", *, batch: bool = False) -> TracerProvider:
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        sampler=tracing._TracesStartWhereWorkArrives(ALWAYS_ON),
    )
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def memory(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """infra.tracing's tracer writing to memory (the process-wide provider stays untouched)."""
    exporter = InMemorySpanExporter()
    provider = provider_with(exporter)
    monkeypatch.setattr(tracing, "tracer", provider.get_tracer("kassa"))
    token = log_ids_var.set(None)
    yield exporter
    log_ids_var.reset(token)
    provider.shutdown()


# -- which exporter ----------------------------------------------------------------------------------


def test_otlp_when_an_endpoint_is_set_else_json_lines_in_development_else_nothing(tmp_path: Path) -> None:
    otlp = tracing.choose_exporter("payment", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert isinstance(otlp, OTLPSpanExporter)
    assert isinstance(tracing.choose_exporter("payment", {"OTEL_TRACES_EXPORTER": "otlp"}), OTLPSpanExporter)
    assert isinstance(
        tracing.choose_exporter("payment", {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}),
        OTLPSpanExporter,
    )

    files = tracing.choose_exporter("payment", {"KASSA_TRACE_DIR": str(tmp_path / "traces")})
    assert isinstance(files, tracing.JsonLinesSpanExporter)
    assert files.path.parent == tmp_path / "traces" and files.path.name.startswith("payment-")
    assert files.path.suffix == ".jsonl"
    files.shutdown()

    # Production with no collector named records nothing; so do the standard switches, whatever else is set.
    assert tracing.choose_exporter("payment", {}) is None
    assert tracing.choose_exporter("payment", {"KASSA_ENV": "production"}) is None
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "KASSA_TRACE_DIR": str(tmp_path)}
    assert tracing.choose_exporter("payment", {**endpoint, "OTEL_TRACES_EXPORTER": "none"}) is None
    assert tracing.choose_exporter("payment", {**endpoint, "OTEL_SDK_DISABLED": "true"}) is None


def test_development_writes_under_the_stack_folder_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exporter = tracing.choose_exporter("order", {"KASSA_ENV": "development"})
    assert isinstance(exporter, tracing.JsonLinesSpanExporter)
    assert exporter.path.parent == Path(".kassa/stack/traces")
    assert (tmp_path / ".kassa" / "stack" / "traces").is_dir()
    exporter.shutdown()


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()
        self.wfile.write(b"")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """An OTLP/HTTP receiver on a free loopback port: where it listens, and the requests it got."""
    received: list[tuple[str, bytes]] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_otlp_exports_the_spans_to_the_collector_named_by_the_standard_variable(collector) -> None:
    url, received = collector
    exporter = tracing.choose_exporter("payment", {"OTEL_EXPORTER_OTLP_ENDPOINT": url})
    assert exporter is not None
    provider = provider_with(exporter, "payment", batch=True)
    tracer = provider.get_tracer("kassa")
    with tracer.start_as_current_span("kassa.payment.v1.PaymentService/AuthorizePayment", kind=SpanKind.SERVER) as s:
        s.set_attribute("kassa.payment_id", "pay-1")
        with tracer.start_as_current_span("INSERT payment.payments", kind=SpanKind.CLIENT):
            pass
    assert provider.force_flush(10_000)
    provider.shutdown()

    assert [path for path, _ in received] == ["/v1/traces"]
    request = ExportTraceServiceRequest.FromString(received[0][1])
    resource = request.resource_spans[0].resource
    assert {a.key: a.value.string_value for a in resource.attributes}["service.name"] == "payment"
    spans = {s.name: s for scope in request.resource_spans[0].scope_spans for s in scope.spans}
    assert set(spans) == {"kassa.payment.v1.PaymentService/AuthorizePayment", "INSERT payment.payments"}
    server, db = spans["kassa.payment.v1.PaymentService/AuthorizePayment"], spans["INSERT payment.payments"]
    assert db.parent_span_id == server.span_id and db.trace_id == server.trace_id
    assert {a.key: a.value.string_value for a in server.attributes}["kassa.payment_id"] == "pay-1"


# -- which spans are recorded ----------------------------------------------------------------------------


def test_traces_start_where_work_arrives_never_at_a_query_or_cache_call(memory) -> None:
    # A worker's poll outside any request: nothing recorded, nothing to propagate.
    with tracing.client_span("SELECT checkout.outbox") as orphan:
        assert not orphan.is_recording()
        assert tracing.current_traceparent() is None
    with tracing.producer_span("publish kassa.order.OrderCreated", None) as parent:
        assert parent is None
    assert memory.get_finished_spans() == ()

    with tracing.server_span("POST /v1/checkout/confirm", None) as root:
        assert root.is_recording()
        with tracing.client_span("UPDATE checkout.checkout_sessions"):
            pass
        sent = dict(tracing.outgoing_metadata())
    spans = {s.name: s for s in memory.get_finished_spans()}
    assert set(spans) == {"POST /v1/checkout/confirm", "UPDATE checkout.checkout_sessions"}
    root_ctx = spans["POST /v1/checkout/confirm"].context
    assert spans["UPDATE checkout.checkout_sessions"].parent.span_id == root_ctx.span_id
    assert sent["traceparent"] == f"00-{root_ctx.trace_id:032x}-{root_ctx.span_id:016x}-{int(root_ctx.trace_flags):02x}"
    assert root_ctx.trace_flags.sampled


def test_a_traceparent_continues_its_trace_through_an_event(memory) -> None:
    with tracing.server_span("POST /v1/checkout/confirm", None):
        written = tracing.current_traceparent()
    # The outbox publisher sends it on under a producer span; the consumer continues from the header.
    with tracing.producer_span("publish kassa.order.OrderConfirmed", written) as header:
        assert header and header != written
    with tracing.consumer_span("notification-orders OrderConfirmed", header):
        pass
    with tracing.consumer_span("notification-orders OrderConfirmed", "00-garbage"):
        pass  # a malformed header starts a trace of its own rather than failing the event
    root, producer, consumer, fresh = memory.get_finished_spans()
    assert producer.parent.span_id == root.context.span_id
    assert consumer.parent.span_id == producer.context.span_id
    assert {root.context.trace_id, producer.context.trace_id, consumer.context.trace_id} == {root.context.trace_id}
    assert fresh.parent is None and fresh.context.trace_id != root.context.trace_id


def test_a_failure_is_recorded_by_its_type_never_its_text(memory) -> None:
    with pytest.raises(ValueError), tracing.server_span("PUT /v1/checkout/state", None):
        raise ValueError("bad email ada@example.com")
    (span,) = memory.get_finished_spans()
    assert span.status.description == "ValueError"
    assert "ada@example.com" not in json.dumps(tracing.span_record(span))
    assert not span.events


# -- ids on spans and log lines ------------------------------------------------------------------------------


def test_ids_of_requests_and_responses_name_the_span_and_the_log_lines(memory) -> None:
    formatter = JsonFormatter("checkout")
    with tracing.server_span("kassa.checkout.v1.CheckoutService/ConfirmCheckout", None) as span:
        tracing.annotate_message(checkout_service_pb2.ConfirmCheckoutRequest(session_id="s-1", idempotency_key="k"))
        tracing.annotate_message(checkout_service_pb2.ConfirmCheckoutResponse(order_id="o-1"))
        tracing.annotate_message(
            checkout_service_pb2.GetCheckoutSessionResponse(
                session=checkout_pb2.CheckoutSession(session_id="s-1", cart_id="c-1")
            )
        )
        tracing.annotate(email="ada@example.com", session_id="")  # not an id it knows, and empty: ignored
        record = logging.LogRecord("kassa.checkout", logging.INFO, __file__, 1, "confirmed", None, None)
        line = json.loads(formatter.format(record))
        ctx = span.get_span_context()
    (done,) = memory.get_finished_spans()
    assert dict(done.attributes or {}) == {
        "kassa.session_id": "s-1",
        "kassa.order_id": "o-1",
        "kassa.cart_id": "c-1",
    }
    assert line["trace_id"] == f"{ctx.trace_id:032x}" and line["span_id"] == f"{ctx.span_id:016x}"
    assert (line["session_id"], line["order_id"], line["cart_id"]) == ("s-1", "o-1", "c-1")
    assert "email" not in line

    outside = json.loads(formatter.format(logging.LogRecord("x", logging.INFO, __file__, 1, "idle", None, None)))
    assert "trace_id" not in outside and "span_id" not in outside


# -- the JSON-lines files and kassa trace ----------------------------------------------------------------------


def test_json_lines_files_read_back_as_span_trees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = tracing.JsonLinesSpanExporter(tmp_path / "gateway-1.jsonl")
    checkout = tracing.JsonLinesSpanExporter(tmp_path / "checkout-2.jsonl")
    gw, co = provider_with(gateway, "gateway", batch=True), provider_with(checkout, "checkout", batch=True)
    monkeypatch.setattr(tracing, "tracer", gw.get_tracer("kassa"))
    with (
        tracing.server_span("POST /v1/checkout/confirm", None),
        tracing.client_span("kassa.checkout.v1.CheckoutService/ConfirmCheckout"),
    ):
        header = tracing.current_traceparent()
    monkeypatch.setattr(tracing, "tracer", co.get_tracer("kassa"))
    with tracing.server_span("kassa.checkout.v1.CheckoutService/ConfirmCheckout", header):
        tracing.annotate(session_id="s-9", order_id="o-9")
        with tracing.client_span("UPDATE checkout.checkout_sessions"):
            pass
    with tracing.server_span("GET /v1/orders/{order_id}", None):
        tracing.annotate(order_id="o-other")
    gw.shutdown()
    co.shutdown()

    (tree,) = find_traces("o-9", tmp_path)
    assert find_traces("s-9", tmp_path)[0].trace_id == tree.trace_id
    assert find_traces(tree.trace_id, tmp_path)[0].span_count == 4
    assert tree.services == ["checkout", "gateway"] and tree.span_count == 4
    (root,) = tree.roots
    assert (root.service, root.name, root.kind, root.offset_ms) == ("gateway", "POST /v1/checkout/confirm", "server", 0)
    (client,) = root.children
    (server,) = client.children
    assert (server.service, server.attributes["kassa.order_id"]) == ("checkout", "o-9")
    assert [c.name for c in server.children] == ["UPDATE checkout.checkout_sessions"]
    assert all(not s.missing_parent and s.duration_ms >= 0 for s in tree.spans())
    as_json = json.loads(json.dumps(tree.to_dict()))
    assert as_json["roots"][0]["children"][0]["children"][0]["attributes"]["kassa.session_id"] == "s-9"

    text = render([tree]).splitlines()
    assert text[0].startswith(f"trace {tree.trace_id}  4 spans") and text[0].endswith("services: checkout, gateway")
    assert "gateway: POST /v1/checkout/confirm" in text[2]
    # Indented two spaces a level under the gateway's request and its client span.
    assert text[4].split("ok", 1)[1].startswith("         checkout: kassa.checkout.v1.CheckoutService/ConfirmCheckout")
    assert "session_id=s-9 order_id=o-9" in text[4]
    assert find_traces("nothing-names-this", tmp_path) == []
    assert find_traces("o-9", tmp_path / "absent") == []


def test_a_span_whose_parent_is_not_written_yet_is_shown_as_a_root(tmp_path: Path) -> None:
    record = {
        "trace_id": "ab" * 16, "span_id": "cd" * 8, "parent_id": "ef" * 8, "service": "notification",
        "name": "notification-orders OrderConfirmed", "kind": "consumer", "start_ns": 10, "end_ns": 2_000_010,
        "status": "UNSET", "attributes": {"kassa.order_id": "o-1"},
    }  # fmt: skip
    (tmp_path / "notification-3.jsonl").write_text(json.dumps(record) + "\n" + '{"trace_id": "torn', encoding="utf-8")
    (tree,) = find_traces("o-1", tmp_path)
    (root,) = tree.roots
    assert root.missing_parent and root.duration_ms == 2.0
    assert "[parent not found]" in render([tree])


def test_a_full_trace_file_rotates_and_both_generations_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = tracing.JsonLinesSpanExporter(tmp_path / "order-7.jsonl", max_bytes=600)
    provider = provider_with(exporter, "order")
    monkeypatch.setattr(tracing, "tracer", provider.get_tracer("kassa"))
    for n in range(6):
        with tracing.server_span("kassa.order.v1.OrderService/GetOrder", None):
            tracing.annotate(order_id=f"o-{n}")
    provider.shutdown()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["order-7.jsonl", "order-7.old.jsonl"]
    assert all(p.stat().st_size <= 600 + 400 for p in tmp_path.iterdir())
    assert find_traces("o-5", tmp_path) and find_traces("o-4", tmp_path)


def test_the_configured_sampler_decides_roots_and_a_sampled_parent_is_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=tracing._TracesStartWhereWorkArrives(ParentBased(ALWAYS_OFF)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "tracer", provider.get_tracer("kassa"))
    with tracing.server_span("GET /v1/orders", None) as root:
        assert not root.is_recording()  # sampled out at the root: nothing below is recorded or passed on
        assert tracing.current_traceparent() is None
    sampled = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    with tracing.server_span("POST /v1/checkout/confirm", sampled), tracing.client_span("SELECT checkout.carts"):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == ["SELECT checkout.carts", "POST /v1/checkout/confirm"]
    provider.shutdown()


class _CountingIds(IdGenerator):
    """Span ids 0x1001, 0x1002, … in one fixed trace: spans whose JSON line is known to the byte."""

    def __init__(self) -> None:
        self.spans = 0x1000

    def generate_span_id(self) -> int:
        self.spans += 1
        return self.spans

    def generate_trace_id(self) -> int:
        return 0xABCDEF0123456789ABCDEF0123456789


def test_the_json_lines_format_is_pinned_to_the_byte(tmp_path: Path) -> None:
    """What ``kassa trace`` and any reader of the files rely on: field order, separators, escaping, numbers."""
    exporter = tracing.JsonLinesSpanExporter(tmp_path / "order-1.jsonl")
    provider = TracerProvider(
        resource=Resource.create({"service.name": "order"}),
        sampler=tracing._TracesStartWhereWorkArrives(ALWAYS_ON),
        id_generator=_CountingIds(),
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("kassa")
    second = 1_700_000_000_000_000_000
    root = tracer.start_span(
        "POST /v1/checkout/confirm", kind=SpanKind.SERVER, start_time=second, attributes={"http.request.method": "POST"}
    )
    statement = 'INSERT INTO "order_svc".orders (a) VALUES (%(a)s)\n-- ünïcode ✓ \t \\ "q"'
    child = tracer.start_span(
        "INSERT order_svc.orders",
        context=trace.set_span_in_context(root),
        kind=SpanKind.CLIENT,
        start_time=second + 100_000,
        attributes={"db.system": "postgresql", "db.statement": statement},
        links=[Link(SpanContext(0x11, 0x22, is_remote=True, trace_flags=TraceFlags(1)))],
    )
    for key, value in {
        "kassa.order_id": "o-1", "n.int": 42, "n.float": 0.25, "n.big": 1e300, "n.bool": True,
        "n.list": ["a", "b"], "n.ints": [1, 2, 3],
    }.items():  # fmt: skip
        child.set_attribute(key, value)
    child.set_status(Status(StatusCode.ERROR, "IntegrityError" + "x" * 300))
    child.end(end_time=second + 900_000)
    root.set_attribute("http.response.status_code", 200)
    root.end(end_time=second + 2_000_000)
    producer = tracer.start_span("publish kassa.order.OrderCreated", trace.set_span_in_context(root), SpanKind.PRODUCER)
    producer.end()
    tracer.start_span('notification ✓ "x"', kind=SpanKind.CONSUMER, start_time=7).end(end_time=8)
    # A span made by hand: no service name, no times.
    bare = ReadableSpan("bare", context=SpanContext(1, 2, False), resource=Resource({}))
    exporter.export([bare])
    provider.shutdown()

    lines = (tmp_path / "order-1.jsonl").read_text(encoding="utf-8").splitlines()
    trace_id = '"trace_id":"abcdef0123456789abcdef0123456789"'
    assert lines[0] == (
        f'{{{trace_id},"span_id":"0000000000001002","parent_id":"0000000000001001","service":"order",'
        '"name":"INSERT order_svc.orders","kind":"client","start_ns":1700000000000100000,'
        '"end_ns":1700000000000900000,"status":"ERROR","status_message":"IntegrityError' + "x" * 186 + '",'
        '"attributes":{"db.system":"postgresql","db.statement":"INSERT INTO \\"order_svc\\".orders (a) VALUES '
        '(%(a)s)\\n-- \\u00fcn\\u00efcode \\u2713 \\t \\\\ \\"q\\"","kassa.order_id":"o-1","n.int":42,'
        '"n.float":0.25,"n.big":1e+300,"n.bool":true,"n.list":["a","b"],"n.ints":[1,2,3]},'
        '"links":["00000000000000000000000000000011:0000000000000022"]}'
    )
    assert lines[1] == (
        f'{{{trace_id},"span_id":"0000000000001001","parent_id":null,"service":"order",'
        '"name":"POST /v1/checkout/confirm","kind":"server","start_ns":1700000000000000000,'
        '"end_ns":1700000000002000000,"status":"UNSET",'
        '"attributes":{"http.request.method":"POST","http.response.status_code":200}}'
    )
    producer_line = json.loads(lines[2])
    assert lines[2] == (
        f'{{{trace_id},"span_id":"0000000000001003","parent_id":"0000000000001001","service":"order",'
        f'"name":"publish kassa.order.OrderCreated","kind":"producer","start_ns":{producer_line["start_ns"]},'
        f'"end_ns":{producer_line["end_ns"]},"status":"UNSET"}}'
    )
    assert lines[3] == (
        f'{{{trace_id},"span_id":"0000000000001004","parent_id":null,"service":"order",'
        '"name":"notification \\u2713 \\"x\\"","kind":"consumer","start_ns":7,"end_ns":8,"status":"UNSET"}'
    )
    assert lines[4] == (
        '{"trace_id":"00000000000000000000000000000001","span_id":"0000000000000002","parent_id":null,'
        '"service":"","name":"bare","kind":"internal","start_ns":null,"end_ns":null,"status":"UNSET"}'
    )
    assert len(lines) == 5
    # The exporter writes its lines itself: the same as json.dumps of span_record, what it used to write.
    written = [*memory.get_finished_spans(), bare]
    assert lines == [json.dumps(tracing.span_record(s), separators=(",", ":"), default=str) for s in written]


# -- the span entry points, span for span ------------------------------------------------------------------


class _ServicerContext:
    """What traced_handler reads of a grpc.aio servicer context; ``code`` is what the handler set."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.metadata = metadata
        self.status: grpc.StatusCode | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def code(self) -> grpc.StatusCode | None:
        return self.status


async def test_a_grpc_server_span_continues_the_caller_and_records_the_call_s_status(memory) -> None:
    seen: list[trace.Span] = []

    async def handler(request: str, context: _ServicerContext) -> str:
        seen.append(trace.get_current_span())
        if request == "missing":
            context.status = grpc.StatusCode.NOT_FOUND
            raise RuntimeError("aborted with the text of a caller's input")
        return request

    method = "/kassa.order.v1.OrderService/GetOrder"
    traced = tracing.traced_handler(method, grpc.unary_unary_rpc_method_handler(handler)).unary_unary
    caller = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    assert await traced("o-1", _ServicerContext((("authorization", "x"), ("traceparent", caller)))) == "o-1"
    with pytest.raises(RuntimeError):
        await traced("missing", _ServicerContext(()))
    assert trace.get_current_span() is trace.INVALID_SPAN  # each call's span is current only inside it

    ok, failed = memory.get_finished_spans()
    assert [s.context.span_id for s in seen] == [ok.context.span_id, failed.context.span_id]
    assert (ok.name, ok.kind, dict(ok.attributes or {})) == (
        "kassa.order.v1.OrderService/GetOrder",
        SpanKind.SERVER,
        {"rpc.system": "grpc", "rpc.service": "kassa.order.v1.OrderService", "rpc.method": "GetOrder"},
    )
    assert (ok.context.trace_id, ok.parent.span_id) == (int("ab" * 16, 16), int("cd" * 8, 16))
    assert ok.status.status_code is StatusCode.UNSET
    # The status is the call's, never the exception's (which may quote input): no events either.
    assert failed.parent is None and failed.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert (failed.status.status_code, failed.status.description) == (StatusCode.ERROR, "NOT_FOUND")
    assert not ok.events and not failed.events


def test_a_span_is_current_inside_and_the_caller_s_again_after_even_on_failure(memory) -> None:
    with tracing.server_span("POST /v1/checkout/confirm", None) as root:
        with pytest.raises(KeyError), tracing.client_span("kassa.pricing.v1.PricingService/QuoteOrder") as call:
            assert trace.get_current_span() is call
            raise KeyError("sku")
        assert trace.get_current_span() is root
        with tracing.consumer_span("order-payments PaymentCaptured", tracing.current_traceparent()) as consumer:
            assert trace.get_current_span() is consumer
    assert trace.get_current_span() is trace.INVALID_SPAN
    call_span, consumer_span, root_span = memory.get_finished_spans()
    assert (call_span.status.status_code, call_span.status.description) == (StatusCode.ERROR, "KeyError")
    assert call_span.parent.span_id == root_span.context.span_id == consumer_span.parent.span_id
    assert consumer_span.kind is SpanKind.CONSUMER and root_span.status.status_code is StatusCode.UNSET


def test_a_statement_span_per_statement_inside_a_trace_with_its_text_never_its_values(memory) -> None:
    engine = sa.create_engine("sqlite://")
    tracing.instrument_engine(engine)
    tracing.instrument_engine(engine)  # once per engine, however often asked
    long = "SELECT " + ", ".join(f"{n} AS c{n}" for n in range(300)) + " FROM items WHERE sku = ?"
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE items (sku TEXT)")  # outside any trace: no span
        with tracing.server_span("GET /v1/products", None):
            for _ in range(2):
                conn.exec_driver_sql('INSERT INTO "items" (sku) VALUES (?)', ("SKU-1",))
            conn.exec_driver_sql(long, ("SKU-1",))
            with pytest.raises(sa.exc.OperationalError):
                conn.exec_driver_sql("UPDATE absent SET sku = ?", ("SKU-1",))
    engine.dispose()
    *statements, root = memory.get_finished_spans()
    assert [(s.name, s.kind) for s in statements] == [
        ("INSERT items", SpanKind.CLIENT),
        ("INSERT items", SpanKind.CLIENT),
        ("SELECT items", SpanKind.CLIENT),
        ("UPDATE absent", SpanKind.CLIENT),
    ]
    assert all(s.parent.span_id == root.context.span_id for s in statements)
    assert [dict(s.attributes or {}) for s in statements] == [
        {"db.system": "postgresql", "db.statement": 'INSERT INTO "items" (sku) VALUES (?)'},
        {"db.system": "postgresql", "db.statement": 'INSERT INTO "items" (sku) VALUES (?)'},
        {"db.system": "postgresql", "db.statement": long[:1000]},
        {"db.system": "postgresql", "db.statement": "UPDATE absent SET sku = ?"},
    ]
    assert [s.status.status_code for s in statements] == [StatusCode.UNSET] * 3 + [StatusCode.ERROR]
    assert statements[-1].status.description == "OperationalError"


@pytest.mark.parametrize(
    "value",
    [
        "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01",
        "00-" + "ab" * 16 + "-" + "cd" * 8 + "-00",  # not sampled: continued, and not recorded
        " \t00-" + "ab" * 16 + "-" + "cd" * 8 + "-03 \t",
        "01-" + "ab" * 16 + "-" + "cd" * 8 + "-01-future-fields",  # a later version may add fields
        "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01-extra",  # version 00 may not
        "ff-" + "ab" * 16 + "-" + "cd" * 8 + "-01",
        "00-" + "0" * 32 + "-" + "cd" * 8 + "-01",
        "00-" + "ab" * 16 + "-" + "0" * 16 + "-01",
        "00-" + "AB" * 16 + "-" + "cd" * 8 + "-01",
        "00-" + "ab" * 16 + "-" + "cd" * 8,
        "00-garbage",
        "",
        "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01-" + "x" * 600,  # too long: the propagator's own path
    ],
)
def test_a_traceparent_is_read_as_the_w3c_propagator_reads_it(value: str) -> None:
    extracted = TraceContextTextMapPropagator().extract({"traceparent": value})
    expected = trace.get_current_span(extracted).get_span_context()
    ours = tracing.context_from(value)
    if not expected.is_valid:
        assert ours is None
        return
    assert ours is not None
    assert trace.get_current_span(ours).get_span_context() == expected
    assert dict(ours) == {key: trace.get_current_span(ours) for key in extracted}
