"""The operator console (issue 13 item 5): static HTML, CSS and vanilla JS served by the gateway at ``/console``.

The page is a client of the gateway's own admin REST routes: the operator pastes an admin token
(``kassa token --admin NAME``), the page keeps it in ``sessionStorage`` and sends it as a bearer on every call,
never in a URL. Nothing here touches a backend: the console's responses are files read once at start-up, served
with a strict Content-Security-Policy (scripts and styles from this origin only, no inline script, Trusted Types
required so no string can reach an HTML sink) because what the page shows (names, notes, addresses of orders)
is text an attacker typed.

``KASSA_CONSOLE_TRACE_URL`` (optional) is where an order page's trace link points: an http(s) URL template with
``{order_id}``, ``{session_id}`` or ``{trace_id}`` in it (Jaeger: ``http://jaeger:16686/search?tags=…{order_id}…``).
Unset, the page shows no trace link.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlsplit

import grpc
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gateway import status as gw_status
from infra import errors
from infra.config import ConfigError

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


def console_routes(config: ConsoleConfig) -> list[BaseRoute]:
    """The console's routes, to mount before the gateway's catch-all REST route."""
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

    return [
        Route(PATH, page, methods=["GET"]),
        Route(f"{PATH}/", slash, methods=["GET"]),
        Route(f"{PATH}/config.json", console_config, methods=["GET"]),
        Route(f"{PATH}/static/{{name}}", static, methods=["GET"]),
    ]
