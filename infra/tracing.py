"""Traces: one checkout is one trace, from the gateway through every service, Postgres, Redis, NATS and the provider.

:func:`setup` (called once by each process's ``main``) installs an OpenTelemetry SDK tracer provider with a
:class:`BatchSpanProcessor` (spans are queued in memory and written by a background thread in batches; a span
costs the request path no I/O) and picks the exporter:

* ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, or ``OTEL_TRACES_EXPORTER=otlp``) set:
  OTLP over HTTP/protobuf to that collector, configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables;
* else ``KASSA_TRACE_DIR`` set, or development mode: JSON lines, one span a line, one file per process
  (``<dir>/<service>-<pid>.jsonl``; default dir ``.kassa/stack/traces``; at most ``KASSA_TRACE_FILE_MAX_MB``
  times 2 per process), which ``kassa trace`` reads (:mod:`infra.trace_view`);
* else (production with no collector named): no exporter, and no span is recorded at all; trace context
  arriving from a caller is still passed on, so an upstream's trace is not broken by us.

``OTEL_TRACES_EXPORTER=none`` or ``OTEL_SDK_DISABLED=true`` turn recording off; ``OTEL_TRACES_SAMPLER`` /
``OTEL_TRACES_SAMPLER_ARG`` choose the sampler as usual (default: always on, parent-based). Whatever the sampler,
a span that would start a trace on its own as a client, producer or internal span (a query of a worker's poll
that found nothing, a Redis call outside any request) is never recorded: traces start where work arrives
(a gRPC or HTTP call, an event), so an idle service writes no traces.

What carries the context:

* gRPC: ``traceparent`` metadata, added by :func:`infra.channels.call_metadata` (so every call made the way
  CONTRIBUTING.md asks carries it) and by the gateway; every server span starts in :func:`traced_handler`
  (infra.server's TracingInterceptor).
* The outbox: :func:`infra.outbox.add_event` records the writer's ``traceparent`` in the event envelope (no new
  column: the envelope is the row's JSON payload); the publisher sends it as the NATS ``traceparent`` header and
  :class:`infra.consumer.EventConsumer` continues the trace in the consumer.
* Postgres: :func:`instrument_engine` (SQLAlchemy cursor events), only inside a trace. Redis: the
  opentelemetry-instrumentation-redis package. The provider: payment's HTTP adapter (:func:`client_span`).

Span attributes name what a span works on, ``kassa.session_id``, ``kassa.order_id``, ``kassa.cart_id`` and
``kassa.payment_id`` (:func:`annotate`, :func:`annotate_message`), never personal data or tokens: the SQL of a DB
span has placeholders, never values, and Redis commands show only their name.
:func:`annotate` also puts the ids in :data:`infra.logs.log_ids_var`, so log lines carry them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, cast

import grpc
from google.protobuf import descriptor as pb_descriptor
from google.protobuf.message import Message
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    _get_from_env_or_default,
)
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from infra.logs import log_ids_var

__all__ = [
    "DEFAULT_TRACE_DIR",
    "ID_KEYS",
    "TRACEPARENT",
    "UNTRACED_METHODS",
    "JsonLinesSpanExporter",
    "annotate",
    "annotate_message",
    "choose_exporter",
    "client_span",
    "consumer_span",
    "context_from",
    "current_traceparent",
    "grpc_status",
    "http_status",
    "instrument_engine",
    "outgoing_metadata",
    "producer_span",
    "rename",
    "server_span",
    "setup",
    "shutdown",
    "traced_handler",
    "tracer",
]

log = logging.getLogger("kassa.tracing")

# The ids a span (and a log line) may name; each becomes the attribute kassa.<key>.
ID_KEYS = ("session_id", "order_id", "cart_id", "payment_id")
ATTRIBUTE = {key: f"kassa.{key}" for key in ID_KEYS}
DEFAULT_TRACE_DIR = ".kassa/stack/traces"
DEFAULT_FILE_MAX_MB = 100
TRACEPARENT = "traceparent"

tracer = trace.get_tracer("kassa")
_PROPAGATOR = TraceContextTextMapPropagator()
_installed: dict[str, TracerProvider] = {}


# -- set-up ----------------------------------------------------------------------------------------


class _TracesStartWhereWorkArrives(Sampler):
    """The configured sampler, except that a client/producer/internal span with no parent is never recorded."""

    _ORPHANS = (SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.INTERNAL)

    def __init__(self, base: Sampler) -> None:
        self._base = base
        # The OTEL_TRACES_SAMPLER parentbased_* samplers record every child of a sampled parent.
        self._follows_parent = isinstance(base, ParentBased)

    def should_sample(  # noqa: PLR0917 (the Sampler interface)
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Sequence[trace.Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if not parent.is_valid:
            if kind in self._ORPHANS or kind is None:
                return SamplingResult(Decision.DROP)
        elif self._follows_parent and parent.trace_flags.sampled:
            # What ParentBased answers for a sampled parent, without asking it again (most spans are children).
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, parent.trace_state)
        return self._base.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"TracesStartWhereWorkArrives{{{self._base.get_description()}}}"


def choose_exporter(service: str, environ: Mapping[str, str] | None = None) -> SpanExporter | None:
    """The exporter the environment asks for (module docstring), or None for no recording."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    wanted = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if wanted == "none":
        return None
    if wanted == "otlp" or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # The exporter reads every other OTEL_EXPORTER_OTLP_* variable (headers, timeout, certificates) itself.
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or (
            f"{env['OTEL_EXPORTER_OTLP_ENDPOINT'].rstrip('/')}/v1/traces"
            if env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            else None
        )
        return OTLPSpanExporter(endpoint=endpoint)
    directory = env.get("KASSA_TRACE_DIR") or (
        DEFAULT_TRACE_DIR if env.get("KASSA_ENV", "").strip().lower() == "development" else ""
    )
    if not directory:
        return None
    raw_max = env.get("KASSA_TRACE_FILE_MAX_MB", "").strip()
    max_mb = float(raw_max) if raw_max.replace(".", "", 1).isdigit() and float(raw_max) > 0 else DEFAULT_FILE_MAX_MB
    path = Path(directory).expanduser() / f"{service}-{os.getpid()}.jsonl"
    return JsonLinesSpanExporter(path, max_bytes=int(max_mb * 1024 * 1024))


def setup(service: str, environ: Mapping[str, str] | None = None) -> TracerProvider | None:
    """Install the tracer provider for this process (once; ``service`` names its spans' resource)."""
    if "provider" in _installed:
        return _installed["provider"]
    env = os.environ if environ is None else environ
    try:
        exporter = choose_exporter(service, env)
    except OSError as exc:
        log.warning("tracing is off: %s", exc)
        return None
    if exporter is None:
        return None
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or service})
    provider = TracerProvider(resource=resource, sampler=_TracesStartWhereWorkArrives(_get_from_env_or_default()))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor().instrument(tracer_provider=provider)
    _installed["provider"] = provider
    return provider


def shutdown() -> None:
    """Flush what is queued and stop exporting (also done at interpreter exit)."""
    if "provider" in _installed:
        _installed["provider"].shutdown()


# -- the JSON-lines exporter -----------------------------------------------------------------------

_KINDS = {kind: kind.name.lower() for kind in SpanKind}


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One span as the record ``kassa trace`` reads back (infra.trace_view): what :class:`JsonLinesSpanExporter`
    writes for it, as a dict. The exporter builds its lines without it, for speed; a test holds the two equal."""
    ctx = span.get_span_context()
    parent = span.parent
    attributes = dict(span.attributes or {})
    record: dict[str, Any] = {
        "trace_id": f"{ctx.trace_id:032x}" if ctx else "",
        "span_id": f"{ctx.span_id:016x}" if ctx else "",
        "parent_id": f"{parent.span_id:016x}" if parent is not None else None,
        "service": str(span.resource.attributes.get("service.name", "")),
        "name": span.name,
        "kind": _KINDS.get(span.kind, "internal"),
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
    }
    if span.status.description:
        record["status_message"] = span.status.description[:200]
    if attributes:
        record["attributes"] = attributes
    if span.links:
        record["links"] = [f"{link.context.trace_id:032x}:{link.context.span_id:016x}" for link in span.links]
    return record


# The exporter writes each line itself rather than json.dumps of span_record: the same bytes (a test pins them
# and compares them with span_record's), for 40 % less CPU (bench.spans). The fixed fields are hex ids, enum
# names and ints, which need no escaping; text (names, status messages, the service, attribute keys and string
# values) goes through json's own string encoder, and any other value through one encoder set up as the
# json.dumps call was (compact separators, ASCII only, ``default=str``).
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode
_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii
_QUOTED_KINDS = {kind: _quote(name) for kind, name in _KINDS.items()}
_INTERNAL = _quote("internal")


def _json_of(value: Any) -> str:
    """``value`` as json.dumps would write it in a record, quickly for the usual str, int and None."""
    kind = type(value)
    if kind is str:
        return _quote(value)
    if kind is int:
        return int.__repr__(value)
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    return _encode(value)


def _object(attributes: Mapping[str, Any]) -> str:
    """Span attributes as json.dumps would write them, each value as :func:`_json_of` writes it."""
    # The SDK's attributes (a proxy of its BoundedAttributes) copy to a plain dict in one call.
    plain = attributes.copy() if isinstance(attributes, (dict, MappingProxyType)) else dict(attributes)
    members = []
    for key, value in plain.items():
        if type(key) is not str:
            return _encode(dict(plain))
        members.append(f"{_quote(key)}:{_json_of(value)}")
    return "{" + ",".join(members) + "}"


class _Lines:
    """Spans as JSON lines, exactly as ``json.dumps(span_record(span), separators=(",", ":"), default=str)``."""

    def __init__(self) -> None:
        # The last resource seen and its service, quoted: a process's spans all share its provider's resource.
        # One tuple, replaced whole, so a concurrent export never pairs a resource with another's service.
        self._service: tuple[Any, str] = (None, "")

    def _service_of(self, resource: Resource) -> str:
        seen, service = self._service
        if resource is not seen:
            service = _quote(str(resource.attributes.get("service.name", "")))
            self._service = (resource, service)
        return service

    def line(self, span: ReadableSpan) -> str:
        ctx = span.get_span_context()
        parent = span.parent
        status = span.status
        parts = [
            f'{{"trace_id":"{ctx.trace_id:032x}","span_id":"{ctx.span_id:016x}"'
            if ctx
            else '{"trace_id":"","span_id":""',
            f',"parent_id":"{parent.span_id:016x}"' if parent is not None else ',"parent_id":null',
            f',"service":{self._service_of(span.resource)},"name":{_json_of(span.name)}'
            f',"kind":{_QUOTED_KINDS.get(span.kind, _INTERNAL)},"start_ns":{_json_of(span.start_time)}'
            f',"end_ns":{_json_of(span.end_time)},"status":"{status.status_code.name}"',
        ]
        if status.description:
            parts.append(f',"status_message":{_json_of(status.description[:200])}')
        attributes = span.attributes
        if attributes:
            parts.append(f',"attributes":{_object(attributes)}')
        links = span.links
        if links:
            parts.append(
                ',"links":['
                + ",".join(f'"{link.context.trace_id:032x}:{link.context.span_id:016x}"' for link in links)
                + "]"
            )
        parts.append("}\n")
        return "".join(parts)

    def __call__(self, spans: Sequence[ReadableSpan]) -> str:
        line = self.line
        return "".join([line(span) for span in spans])


class JsonLinesSpanExporter(SpanExporter):
    """Appends each batch of spans to one file, one JSON object a line, written (and flushed) once per batch.

    A file past ``max_bytes`` becomes ``<name>.old.jsonl`` (replacing the previous one) and a new one starts, so a
    process keeps at most twice that on disk (``KASSA_TRACE_FILE_MAX_MB``, default 100: hours of local checkouts).
    """

    def __init__(self, path: Path, max_bytes: int = DEFAULT_FILE_MAX_MB * 1024 * 1024) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._max_bytes = max_bytes
        self._file: IO[str] | None = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self._lines = _Lines()

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        os.replace(self.path, self.path.with_name(f"{self.path.stem}.old.jsonl"))
        self._file = self.path.open("a", encoding="utf-8")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        text = self._lines(spans)
        with self._lock:
            if self._file is None:
                return SpanExportResult.FAILURE
            try:
                self._file.write(text)
                self._file.flush()
                if self._file.tell() > self._max_bytes:
                    self._rotate()
            except OSError:
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


# -- context: what names the work, what carries the trace ------------------------------------------


def annotate(**ids: str) -> None:
    """Name what the current span works on (``session_id=…``, ``order_id=…``, …), and log lines with it."""
    ids = {k: v for k, v in ids.items() if v and k in ATTRIBUTE}
    if not ids:
        return
    span = trace.get_current_span()
    if span.is_recording():
        for key, value in ids.items():
            span.set_attribute(ATTRIBUTE[key], value)
    known = log_ids_var.get()
    if known is None or any(known.get(k) != v for k, v in ids.items()):
        log_ids_var.set({**(known or {}), **ids})


# Per message type: (field, key) of the id fields it has, and the message-typed fields to look into once.
_MessageIds = tuple[tuple[tuple[str, str], ...], tuple[str, ...]]
_message_ids: dict[type, _MessageIds] = {}
# A message field whose own id fields count for the message: a response's session, order, cart or payment.
_NESTED = {"session", "order", "cart", "payment"}


def _ids_of(cls: type, desc: pb_descriptor.Descriptor) -> _MessageIds:
    found = _message_ids.get(cls)
    if found is None:
        fields = desc.fields_by_name
        own = tuple(
            (name, name)
            for name in ID_KEYS
            if name in fields
            and fields[name].type == pb_descriptor.FieldDescriptor.TYPE_STRING
            and not _is_repeated(fields[name])
        )
        nested = tuple(
            name
            for name in _NESTED
            if name in fields
            and fields[name].type == pb_descriptor.FieldDescriptor.TYPE_MESSAGE
            and not _is_repeated(fields[name])
        )
        found = _message_ids[cls] = (own, nested)
    return found


def _is_repeated(field: pb_descriptor.FieldDescriptor) -> bool:
    repeated = getattr(field, "is_repeated", None)  # protobuf 6+; older ones have label
    # types-protobuf 7 no longer declares label, which the protobuf runtimes before 6 have.
    return bool(repeated) if repeated is not None else field.label == field.LABEL_REPEATED  # type: ignore[attr-defined]


def annotate_message(message: Any) -> None:
    """:func:`annotate` with the ids a request or response carries (``session_id``, ``order.order_id``, …)."""
    if not isinstance(message, Message):
        return
    own, nested = _ids_of(type(message), cast(pb_descriptor.Descriptor, message.DESCRIPTOR))
    ids = {key: getattr(message, name) for name, key in own}
    for name in nested:
        if message.HasField(name):
            inner = getattr(message, name)
            inner_own, _ = _ids_of(type(inner), inner.DESCRIPTOR)
            for field_name, key in inner_own:
                ids.setdefault(key, getattr(inner, field_name))
    if any(ids.values()):
        annotate(**ids)


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or None outside any recorded trace.

    Only sampled contexts travel: a span the sampler dropped (a worker's query, a sampled-out trace) passes no
    context on, so the callee decides for itself rather than inheriting "not recorded" from a poll.
    """
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid or not ctx.trace_flags.sampled:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def outgoing_metadata() -> tuple[tuple[str, str], ...]:
    """The gRPC metadata (or HTTP headers, as pairs) that carry the current trace to a callee."""
    parent = current_traceparent()
    return () if parent is None else ((TRACEPARENT, parent),)


# The W3C propagator's pattern and length limit (TraceContextTextMapPropagator's), for the fast path below.
_TRACEPARENT_FORMAT = re.compile(r"^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:(-.*)|[ \t]*)$")
_TRACEPARENT_MAX = 512
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


def context_from(traceparent: str | None) -> otel_context.Context | None:
    """The context a ``traceparent`` value continues, or None (malformed or absent: a new trace).

    What ``TraceContextTextMapPropagator().extract({"traceparent": traceparent})`` gives (a test compares the two
    on valid and malformed values), without its carrier and getter round trip: it runs for every call and event
    that arrives. A value too long for the propagator goes to it, for its warning.
    """
    if not traceparent:
        return None
    if type(traceparent) is not str or len(traceparent) > _TRACEPARENT_MAX:
        ctx = _PROPAGATOR.extract({TRACEPARENT: traceparent})
        return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None
    match = _TRACEPARENT_FORMAT.search(traceparent)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN or version == "ff" or (version == "00" and rest):
        return None
    span_context = trace.SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int(span_id, 16),
        is_remote=True,
        trace_flags=trace.TraceFlags(int(flags, 16)),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context), otel_context.Context())


def grpc_status(span: trace.Span, code: grpc.StatusCode | None) -> None:
    """Record a gRPC status other than OK on its span."""
    if code is not None and code is not grpc.StatusCode.OK:
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        span.set_status(Status(StatusCode.ERROR, code.name))


# -- spans -------------------------------------------------------------------------------------------


# On the asyncio server a unary handler is an async function of an aio context; grpc-stubs types
# RpcMethodHandler.unary_unary as the sync server's (a plain function of a grpc.ServicerContext).
AioUnary = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


# gRPC methods that get no server span: health checks and reflection.
UNTRACED_METHODS = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def traced_handler(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """``handler`` in a SERVER span per call, continuing the caller's ``traceparent`` (infra.server's
    TracingInterceptor wraps each method once with it)."""
    inner = cast(AioUnary, handler.unary_unary)
    name = method.lstrip("/")
    service, _, rpc = name.rpartition("/")
    attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc}

    async def traced(request: Any, context: grpc.aio.ServicerContext) -> Any:
        parent = None
        for key, value in context.invocation_metadata() or ():
            if key == TRACEPARENT:
                parent = context_from(cast(str, value))  # a text (not -bin) key: str
                break
        # The call's status is what its span records (an abort raises, with the code already set).
        with _CurrentSpan(name, SpanKind.SERVER, parent, attributes, failure_status=False) as span:
            try:
                return await inner(request, context)
            finally:
                if span.is_recording():
                    grpc_status(span, context.code())

    return grpc.unary_unary_rpc_method_handler(
        traced,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class _CurrentSpan:
    """A span that is the current one inside ``with``, whose failure is recorded by the exception's type only: its
    text may quote what a caller sent (an email in a validation message), and spans are kept where logs'
    redaction doesn't reach. No exception events, whatever ``failure_status`` says.

    What ``tracer.start_as_current_span(…, record_exception=False, set_status_on_exception=False)`` does, plus
    the status, in one plain context manager: that call nests three generator context managers (the proxy
    tracer's, the SDK tracer's and ``use_span``), a measurable share of a span's cost (bench.spans).
    """

    __slots__ = ("_attributes", "_failure_status", "_kind", "_name", "_parent", "_span", "_token")

    def __init__(
        self,
        name: str,
        kind: SpanKind,
        parent: otel_context.Context | None,
        attributes: Mapping[str, Any] | None,
        *,
        failure_status: bool = True,
    ) -> None:
        self._name = name
        self._kind = kind
        self._parent = parent
        self._attributes = attributes
        self._failure_status = failure_status

    def __enter__(self) -> trace.Span:
        span = self._span = tracer.start_span(
            self._name,
            context=self._parent,
            kind=self._kind,
            attributes=self._attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        self._token = otel_context.attach(trace.set_span_in_context(span))
        return span

    def __exit__(self, _type: type[BaseException] | None, exc: BaseException | None, _tb: Any) -> None:
        span = self._span
        try:
            if exc is not None and self._failure_status and span.is_recording() and not isinstance(exc, GeneratorExit):
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        finally:
            otel_context.detach(self._token)
            span.end()


def server_span(
    name: str, traceparent: str | None, attributes: Mapping[str, Any] | None = None
) -> AbstractContextManager[trace.Span]:
    """A SERVER span for an HTTP request, continuing the caller's ``traceparent`` header when it sent one."""
    return _CurrentSpan(name, SpanKind.SERVER, context_from(traceparent), attributes)


def http_status(span: trace.Span, status: int) -> None:
    """Record an HTTP answer on its span; a 5xx is an error (a 4xx is the client's)."""
    if span.is_recording():
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))


def rename(name: str) -> None:
    """Rename the current span (once the route it serves is known)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.update_name(name)


def client_span(name: str, attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[trace.Span]:
    """A CLIENT span around an outgoing call (only inside a trace: the sampler drops it otherwise)."""
    return _CurrentSpan(name, SpanKind.CLIENT, None, attributes)


def consumer_span(
    name: str, traceparent: str | None, attributes: Mapping[str, Any] | None = None
) -> AbstractContextManager[trace.Span]:
    """A CONSUMER span continuing the trace of the event's writer (``traceparent`` from its header or envelope)."""
    return _CurrentSpan(name, SpanKind.CONSUMER, context_from(traceparent), attributes)


@contextlib.contextmanager
def producer_span(
    name: str, traceparent: str | None, attributes: Mapping[str, Any] | None = None
) -> Iterator[str | None]:
    """A PRODUCER span under the writer's trace (none without one); yields the ``traceparent`` to send on."""
    parent = context_from(traceparent)
    if parent is None:
        yield traceparent
        return
    with _CurrentSpan(name, SpanKind.PRODUCER, parent, attributes):
        yield current_traceparent() or traceparent


# -- Postgres ---------------------------------------------------------------------------------------

_SQL_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+([\w.\"]+)", re.IGNORECASE)
# Per statement text: its span's name and attributes (read-only: every span of the statement shares them; the
# SDK copies a span's attributes).
_sql_spans: dict[str, tuple[str, Mapping[str, str]]] = {}
_SPAN_KEY = "_kassa_span"


def _sql_name(statement: str) -> str:
    words = statement.lstrip().split(None, 1)
    verb = words[0].upper() if words else "SQL"
    table = _SQL_TABLE.search(statement)
    return f"{verb} {table.group(1).replace(chr(34), '')}" if table else verb


def _sql_span(statement: str) -> tuple[str, Mapping[str, str]]:
    found = _sql_spans.get(statement)
    if found is None:
        found = (
            _sql_name(statement),
            MappingProxyType({"db.system": "postgresql", "db.statement": statement[:1000]}),
        )
        if len(_sql_spans) < 4096:
            _sql_spans[statement] = found
    return found


def instrument_engine(engine: Any) -> None:
    """Postgres spans for ``engine`` (an AsyncEngine or Engine), one per statement, only inside a trace.

    The cost outside a trace is one context look-up per statement, so a worker's idle polling makes no
    spans. The statement is recorded as SQLAlchemy sends it, with placeholders: never a bound value.
    """
    from sqlalchemy import event

    sync_engine = getattr(engine, "sync_engine", engine)
    if getattr(sync_engine, "_kassa_traced", False):
        return
    sync_engine._kassa_traced = True

    def before(_conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool) -> None:
        if context is None:
            return
        current = otel_context.get_current()
        if not trace.get_current_span(current).is_recording():
            return
        name, attributes = _sql_span(statement)
        span = tracer.start_span(name, context=current, kind=SpanKind.CLIENT, attributes=attributes)
        setattr(context, _SPAN_KEY, span)

    def after(_conn: Any, _cursor: Any, _statement: str, _params: Any, context: Any, _many: bool) -> None:
        span = getattr(context, _SPAN_KEY, None)
        if span is not None:
            setattr(context, _SPAN_KEY, None)
            span.end()

    def failed(exception_context: Any) -> None:
        context = exception_context.execution_context
        span = getattr(context, _SPAN_KEY, None) if context is not None else None
        if span is not None:
            setattr(context, _SPAN_KEY, None)
            span.set_status(Status(StatusCode.ERROR, type(exception_context.original_exception).__name__))
            span.end()

    event.listen(sync_engine, "before_cursor_execute", before)
    event.listen(sync_engine, "after_cursor_execute", after)
    event.listen(sync_engine, "handle_error", failed)
