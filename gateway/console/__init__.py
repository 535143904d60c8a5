"""The operator console (issue 13 item 5): static HTML, CSS and vanilla JS served by the gateway at ``/console``.

The page is a client of the gateway's own admin REST routes: the operator pastes an admin token
(``kassa token --admin NAME``), the page keeps it in ``sessionStorage`` and sends it as a bearer on every call,
never in a URL. Nothing here touches a backend: the console's responses are files read once at start-up, served
with a strict Content-Security-Policy (scripts and styles from this origin only, no inline script, Trusted Types
required so no string can reach an HTML sink) because what the page shows (names, notes, addresses of orders)
is text an attacker typed.

An order's trace: ``GET /console/api/traces/{id}`` (admin bearer) answers the span trees that name the id, read by
``infra.trace_view.find_traces`` from this gateway's JSON-lines trace files (``KASSA_TRACE_DIR``, which the local
stack and the test meshes set), and the order page draws them. Where traces go to an OTLP collector instead,
``KASSA_CONSOLE_TRACE_URL`` (optional) adds a link to it: an http(s) URL template with ``{order_id}``,
``{session_id}`` or ``{trace_id}`` in it (Jaeger: ``http://jaeger:16686/search?tags=…{order_id}…``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlsplit

import grpc
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gateway import status as gw_status
from infra import trace_view
from infra.auth import Identity, Unauthenticated
from infra.config import ConfigError
from kernel import errors

__all__ = ["CONTENT_SECURITY_POLICY", "ConsoleConfig", "console_routes"]

PATH = "/console"
TRACE_URL_ENV = "KASSA_CONSOLE_TRACE_URL"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    ]
)
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# Each file the console is made of, with its media type; nothing else under /console is served.
_FILES = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
# How many of the newest traces naming an id the page gets (a session retried after a decline has several).
MAX_TRACES = 10
_TRACE_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_PLACEHOLDERS = frozenset({"order_id", "session_id", "trace_id"})


@dataclass(frozen=True)
class ConsoleConfig:
    trace_url_template: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ConsoleConfig:
        template = env.get(TRACE_URL_ENV, "").strip()
        if template:
            parts = urlsplit(template)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(f"{TRACE_URL_ENV} must be an http(s) URL template, got {template!r}")
            unknown = set(_PLACEHOLDER.findall(template)) - _PLACEHOLDERS
            if unknown:
                raise ConfigError(
                    f"{TRACE_URL_ENV} may name only {{order_id}}, {{session_id}} and {{trace_id}},"
                    f" not {sorted(unknown)}"
                )
        return cls(trace_url_template=template)


def _static(name: str) -> bytes:
    return resources.files(__name__).joinpath("static", name).read_bytes()


Authenticate = Callable[[str | None], Awaitable[Identity | None]]


def _refusal(code: grpc.StatusCode, message: str, reason: str, http: int) -> Response:
    return JSONResponse(
        gw_status.to_json(gw_status.make_status(code, message, reason)), status_code=http, headers=_HEADERS
    )


def console_routes(config: ConsoleConfig, authenticate: Authenticate) -> list[BaseRoute]:
    """The console's routes, to mount before the gateway's catch-all REST route; ``authenticate`` turns an
    Authorization header into the caller's identity (the gateway's verifier)."""
    files = {name: (_static(name), media) for name, media in _FILES.items()}
    settings = {"traceUrlTemplate": config.trace_url_template}

    def serve(name: str) -> Response:
        body, media = files[name]
        return Response(body, media_type=media, headers=_HEADERS)

    async def page(_request: Request) -> Response:
        return serve("index.html")

    async def slash(_request: Request) -> Response:
        return RedirectResponse(PATH, status_code=308)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in files:
            missing = gw_status.make_status(grpc.StatusCode.NOT_FOUND, "no such console file", errors.Reason.NOT_FOUND)
            return JSONResponse(gw_status.to_json(missing), status_code=404, headers=_HEADERS)
        return serve(name)

    async def console_config(_request: Request) -> Response:
        return JSONResponse(settings, headers=_HEADERS)

    async def traces(request: Request) -> Response:
        try:
            identity = await authenticate(request.headers.get("authorization"))
        except Unauthenticated as exc:
            return _refusal(grpc.StatusCode.UNAUTHENTICATED, str(exc), errors.Reason.UNAUTHENTICATED, 401)
        if identity is None:
            return _refusal(
                grpc.StatusCode.UNAUTHENTICATED,
                "send 'Authorization: Bearer <token>'",
                errors.Reason.UNAUTHENTICATED,
                401,
            )
        if not identity.is_admin:
            return _refusal(
                grpc.StatusCode.PERMISSION_DENIED, "traces need the admin role", errors.Reason.PERMISSION_DENIED, 403
            )
        key = request.path_params["key"]
        if not _TRACE_KEY.match(key):
            invalid = gw_status.make_status(
                grpc.StatusCode.INVALID_ARGUMENT,
                "id: must be an order, session, cart, payment or trace id",
                errors.Reason.INVALID_ARGUMENT,
                {"field": "id"},
            )
            return JSONResponse(gw_status.to_json(invalid), status_code=400, headers=_HEADERS)
        # The files are read whole: off the event loop.
        found = await asyncio.to_thread(trace_view.find_traces, key)
        # The checkout that placed an order is its largest trace by far; every later read of the order (this
        # console's own, a consumer's GetOrder) is a small trace of its own. Largest first, then newest, so the
        # one an operator came for is never pushed out of the first MAX_TRACES by reads.
        found.sort(key=lambda tree: (tree.span_count, tree.start_ns), reverse=True)
        return JSONResponse({"traces": [tree.to_dict() for tree in found[:MAX_TRACES]]}, headers=_HEADERS)

    return [
        Route(PATH, page, methods=["GET"]),
        Route(f"{PATH}/", slash, methods=["GET"]),
        Route(f"{PATH}/config.json", console_config, methods=["GET"]),
        Route(f"{PATH}/static/{{name}}", static, methods=["GET"]),
        Route(f"{PATH}/api/traces/{{key}}", traces, methods=["GET"]),
    ]
