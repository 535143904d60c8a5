"""The gateway's Prometheus metrics: HTTP requests by route template and status, and ``GET /metrics``.

The gateway's port is public, so its ``/metrics`` asks for an admin token (``Authorization: Bearer <admin JWT>``,
Prometheus' ``authorization`` scrape setting): the exposition names routes, error rates and the admission state,
which is nobody else's business. The services' metrics ports (gRPC port + 1000) are internal and need none.

Routes are labelled by their template (``/v1/carts/{cart_id}``), never the raw path, so a scanner trying random
paths adds no series: whatever matches no route is ``unmatched``.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.responses import Response

from infra.metrics import LATENCY_BUCKETS, exposition

__all__ = ["HTTP_REQUESTS", "HTTP_SECONDS", "ROUTE_SCOPE_KEY", "UNMATCHED", "metrics_response", "observe"]

HTTP_REQUESTS = Counter(
    "kassa_http_requests",
    "REST requests answered by the gateway, by method, route template and HTTP status",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "kassa_http_request_duration_seconds",
    "Time the gateway took to answer a REST request (admission wait included), by method and route template",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)

# Where the gateway leaves the matched route's template in the request's ASGI scope.
ROUTE_SCOPE_KEY = "kassa.route"
UNMATCHED = "unmatched"


# (method, route template, status) -> its children of HTTP_SECONDS and HTTP_REQUESTS, resolved once: a request then
# costs two locked adds, no label hashing in prometheus_client. Bounded as the labels are (routes x methods x statuses).
_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def observe(request: Request, status: int, seconds: float, route: str | None = None) -> None:
    """Count one answered request; ``route`` (a template) defaults to what routing matched, else ``unmatched``."""
    key = (request.method, route or request.scope.get(ROUTE_SCOPE_KEY) or UNMATCHED, status)
    children = _children.get(key)
    if children is None:
        method, template, _ = key
        children = _children[key] = (
            HTTP_SECONDS.labels(method, template),
            HTTP_REQUESTS.labels(method, template, str(status)),
        )
    children[0].observe(seconds)
    children[1].inc()


def metrics_response() -> Response:
    body, content_type = exposition()
    return Response(body, media_type=None, headers={"Content-Type": content_type, "Cache-Control": "no-store"})
