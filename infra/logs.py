"""JSON logs, one object per line, with the request id of the call being served, its trace and span ids
(``trace_id``, ``span_id``: the trace ``kassa trace`` shows) and the ids of what it works on (``session_id``,
``order_id``, ``cart_id``, ``payment_id``, set by :func:`infra.tracing.annotate` where a call or an event starts).

No personal data or credentials: the code logs ids, never an email, phone number, address or token, and
the formatter passes every message, traceback and extra field through :func:`infra.pii.redact` as a
safety net for text that carries what a caller sent (an exception's message, an upstream's error): an
email shows as ``a***@example.com``, a phone number as ``***67``, a JWT, bearer or payment token not at all.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

from opentelemetry import trace

from infra.pii import redact

__all__ = ["log_ids_var", "request_id_var", "setup_logging"]

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("kassa_request_id", default="")
# The ids of what the code is working on (session_id, order_id, cart_id, payment_id): never personal data.
log_ids_var: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("kassa_log_ids", default=None)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        rid = request_id_var.get()
        if rid:
            entry["request_id"] = rid
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = f"{span.trace_id:032x}"
            entry["span_id"] = f"{span.span_id:016x}"
        ids = log_ids_var.get()
        if ids:
            entry.update(ids)
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update({k: redact(v) if isinstance(v, str) else v for k, v in extra.items()})
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        elif record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, default=str)


def setup_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request at INFO: a line per provider call (and per webhook the sandbox sends) is a
    # cost on every payment and says nothing a failure doesn't log anyway.
    logging.getLogger("httpx").setLevel(logging.WARNING)
