"""The REST gateway: Starlette app translating HTTP/JSON to the backends' gRPC (DESIGN.md §2).

The gateway owns nothing durable. Per request it: tags a request id, verifies the bearer token up
front (services verify it again; the gateway only fails fast), applies the rate limits (per client IP,
per token subject, and guest tokens per client IP; gateway.config lists them),
matches the route derived from the protos, builds the request message strictly, forwards the
caller's own ``Authorization`` header so services apply their ownership rules, and returns the
reply as proto3 JSON or the error as a ``google.rpc.Status`` JSON.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import cast
from urllib.parse import quote

import grpc
from google.protobuf.message import Message
from google.rpc import status_pb2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from gateway import status as gw_status
from gateway.audit import AUDIT_BACKEND, list_audit_entries
from gateway.backends import Backends
from gateway.client_ip import client_ip, client_key
from gateway.config import GatewayConfig
from gateway.console import ConsoleConfig, console_routes
from gateway.metrics import ROUTE_SCOPE_KEY, UNMATCHED, metrics_response, observe
from gateway.openapi import docs_page, load_document
from gateway.ops import OPS_BACKEND, outbox_status
from gateway.ratelimit import Limit, RateLimiter, limits_redis
from gateway.routing import MethodNotAllowed, RouteMatch, RouteNotFound, build_route_table, rpc_method
from gateway.transcoding import RequestParts, build_request, render
from infra import tracing, webhook_signature
from infra.admission import CheckoutAdmission, CheckoutPolicy, Overloaded, Ticket
from infra.auth import Identity, Unauthenticated, mint_token
from infra.channels import ServiceCredentials, call_metadata
from infra.config import Settings
from infra.grpc_errors import retry_delay
from infra.logs import request_id_var
from infra.runner import verifier_for
from kassa.checkout.v1 import cart_service_pb2, checkout_service_pb2
from kassa.payment.v1 import payment_service_pb2
from kernel import errors

__all__ = ["Gateway", "create_app"]

log = logging.getLogger("kassa.gateway")

ADMIN_PREFIX = "/v1/admin/"
REQUEST_ID_HEADER = "X-Request-Id"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_PROVIDER = re.compile(r"^[a-z0-9_-]{1,64}$")
# How many (peer, X-Forwarded-For) -> client key answers are kept (all dropped when full).
_CLIENT_KEYS_KEPT = 4096
_HANDLE_WEBHOOK = rpc_method(
    payment_service_pb2.DESCRIPTOR.services_by_name["PaymentService"].methods_by_name["HandleWebhook"]
)
# A new cart starts a checkout (unless its caller has one in progress); ConfirmCheckout's answer ends it.
_CREATE_CART = rpc_method(cart_service_pb2.DESCRIPTOR.services_by_name["CartService"].methods_by_name["CreateCart"])
_CONFIRM = rpc_method(
    checkout_service_pb2.DESCRIPTOR.services_by_name["CheckoutService"].methods_by_name["ConfirmCheckout"]
)

Handler = Callable[[Request, str], Awaitable[Response]]


def _limit(name: str, requests: int, window_seconds: int) -> Limit | None:
    return Limit(name, requests, window_seconds) if requests > 0 else None


class HttpRefusal(Exception):
    """A refusal whose HTTP status or headers the gRPC table alone doesn't give (405, 413, 429)."""

    def __init__(self, status: status_pb2.Status, http_status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(status.message)
        self.status = status
        self.http_status = http_status
        self.headers = headers or {}


def checkout_policy(settings: Settings, config: GatewayConfig) -> CheckoutPolicy:
    """The gateway's admission of new checkouts: its limit and idle time from ``config``, the latency target and
    bound on a wait from the services' (KASSA_ADMISSION_*); KASSA_MAX_IN_FLIGHT=0 turns it off here too. A new
    checkout is refused when its expected wait is over twice KASSA_ADMISSION_MAX_WAIT_MS: the gateway's queue
    refuses only on arrival (a waiter is served), so its wait is what a buyer in a flash sale spends instead of
    a refusal. One that waited out that bound is let in past the limit only while the checkouts in progress are
    fewer than half of what checkout refuses even work under way at, so their calls never meet that cap."""
    limit = config.checkouts_in_progress if settings.max_in_flight > 0 else 0
    # What checkout refuses even work under way at (infra.config: KASSA_ADMISSION_HARD_LIMIT, or 8 x
    # KASSA_MAX_IN_FLIGHT): half of it in checkouts, each with up to two calls in flight, never reach it. Never
    # fewer than twice the adaptive limit's ceiling, or the queue would have no room to wait in.
    services_cap = settings.admission_hard_limit or 8 * settings.max_in_flight
    room = max(4 * limit, services_cap // 2)
    if limit and room > services_cap // 2:
        log.warning(
            "KASSA_GATEWAY_CHECKOUTS_IN_PROGRESS=%d lets up to %d checkouts in progress, whose calls can exceed"
            " the %d in flight at which checkout refuses work under way (KASSA_ADMISSION_HARD_LIMIT, or 8 x"
            " KASSA_MAX_IN_FLIGHT): raise that, or lower this to %d",
            limit,
            room,
            services_cap,
            max(1, services_cap // 8),
        )
    return CheckoutPolicy(
        limit=limit,
        call_cap=max(settings.admission_hard_limit, limit) if settings.admission_hard_limit else 0,
        max_in_progress=room,
        idle_s=config.checkout_idle_ms / 1000,
        max_wait_s=2 * settings.admission_max_wait_ms / 1000,
        latency_target_s=settings.admission_latency_target_ms / 1000,
    )


def _at_capacity(exc: Overloaded) -> status_pb2.Status:
    return gw_status.make_status(
        grpc.StatusCode.UNAVAILABLE,
        "the gateway is at capacity; retry after the Retry-After delay",
        errors.Reason.UNAVAILABLE,
        {
            "why": exc.why,
            "in_flight": str(exc.in_flight),
            "waiting": str(exc.waiting),
            "retry_after_seconds": exc.retry_after_header,
        },
    )


def _refused_if_overloaded(start: Callable[[], None]) -> None:
    try:
        start()
    except Overloaded as exc:
        raise HttpRefusal(_at_capacity(exc), 503, {"Retry-After": exc.retry_after_header}) from exc


def _retry_after(seconds: float | None) -> dict[str, str]:
    """The Retry-After header for a refusal that said when to retry (whole seconds, at least 1)."""
    return {} if seconds is None else {"Retry-After": str(max(1, math.ceil(seconds)))}


def error_response(status: status_pb2.Status, http_status: int | None = None) -> JSONResponse:
    code = gw_status.http_status(status.code) if http_status is None else http_status
    return JSONResponse(gw_status.to_json(status), status_code=code)


class Gateway:
    """The handlers and what they share: route table, backend channels, verifier, rate limiter."""

    def __init__(self, settings: Settings, config: GatewayConfig) -> None:
        self.settings = settings
        self.config = config
        self.routes = build_route_table()
        self.backends = Backends(settings, [*(r.rpc for r in self.routes.routes), _HANDLE_WEBHOOK])
        self._verifier = verifier_for(settings)
        self._creds = ServiceCredentials(settings.service_secret, "gateway")
        self._limiter: RateLimiter | None = None
        self._subject_limit = _limit("subject", config.rate_limit_per_minute, 60)
        self._ip_limit = _limit("ip", config.ip_rate_limit_per_minute, 60)
        self._guest_limit = _limit("guest_tokens", config.guest_tokens_per_ip_per_hour, 3600)
        self._client_keys: dict[tuple[str | None, tuple[str, ...]], str] = {}
        # New REST checkouts begin with a guest token or a new cart: what an overloaded gateway queues and turns
        # away, by the checkouts it has in progress.
        self._admission = CheckoutAdmission(checkout_policy(settings, self.config))
        # The committed contract (make openapi; CI fails when it differs from the protos'), rendered once.
        self._openapi = load_document()
        self._docs = docs_page(self._openapi)

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        """Open the backend channels (and Redis for the rate limit) for the app's lifetime."""
        async with AsyncExitStack() as stack:
            self.backends.open()
            stack.push_async_callback(self.backends.close)
            if self.config.rate_limited and self.settings.redis_url:
                redis = limits_redis(self.settings.redis_url)
                stack.push_async_callback(redis.aclose)
                self._limiter = RateLimiter(redis)
            elif self.config.rate_limited:
                log.warning("KASSA_REDIS_URL is not set: rate limiting is off")
            try:
                yield
            finally:
                self._limiter = None

    # -- endpoints ---------------------------------------------------------------------------------

    async def transcode(self, request: Request) -> Response:
        return await self._serve(request, self._transcode, counted=True)

    async def guest(self, request: Request) -> Response:
        return await self._serve(request, self._guest, counted=True, arrival=True, route="/v1/auth/guest")

    async def webhook(self, request: Request) -> Response:
        return await self._serve(request, self._webhook, route="/v1/payments/webhooks/{provider}")

    async def metrics(self, request: Request) -> Response:
        """Prometheus' scrape of this replica (gateway.metrics): only with an admin token, the port being public."""
        try:
            identity = await self._authenticate(request)
        except Unauthenticated as exc:
            return error_response(gw_status.from_domain_error(exc))
        if identity is None:
            missing = Unauthenticated("missing credentials: send 'Authorization: Bearer <admin token>'")
            return error_response(gw_status.from_domain_error(missing))
        if not identity.is_admin or identity.is_service:
            return error_response(gw_status.from_domain_error(errors.PermissionDenied("/metrics needs the admin role")))
        return metrics_response()

    async def openapi(self, _request: Request) -> Response:
        return JSONResponse(self._openapi)

    async def docs(self, _request: Request) -> Response:
        return HTMLResponse(self._docs)

    async def healthz(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, _request: Request) -> Response:
        """Ready when every backend's gRPC health service answers SERVING."""
        backends = await self.backends.health(self.config.readiness_timeout_seconds)
        ready = all(backends.values())
        body = {"status": "ok" if ready else "unavailable", "backends": backends}
        return JSONResponse(body, status_code=200 if ready else 503)

    async def http_exception(self, request: Request, exc: Exception) -> Response:
        """Starlette's own 404/405 (no route, unsupported method) in the same Status JSON shape."""
        http = exc.status_code if isinstance(exc, HTTPException) else 500
        code = {404: grpc.StatusCode.NOT_FOUND, 405: grpc.StatusCode.UNIMPLEMENTED}.get(http, grpc.StatusCode.UNKNOWN)
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        response = error_response(gw_status.make_status(code, str(detail), gw_status.reason_for_code(code)), http)
        if isinstance(exc, HTTPException) and exc.headers:
            response.headers.update(exc.headers)
        return response

    # -- request pipeline --------------------------------------------------------------------------

    async def _serve(
        self,
        request: Request,
        handler: Handler,
        *,
        counted: bool = False,
        arrival: bool = False,
        route: str | None = None,
    ) -> Response:
        """:meth:`_answer` in the request's server span (continuing the caller's trace: infra.tracing).

        The span is named by the route's template, never the raw path (ids, and whatever a caller puts in a
        path): ``unmatched`` until routing renames it, which a request refused before it matched keeps."""
        name = f"{request.method} {route or UNMATCHED}"
        with tracing.server_span(
            name, request.headers.get(tracing.TRACEPARENT), {"http.request.method": request.method}
        ) as span:
            response = await self._answer(request, handler, counted=counted, arrival=arrival, route=route)
            tracing.http_status(span, response.status_code)
        return response

    async def _answer(
        self,
        request: Request,
        handler: Handler,
        *,
        counted: bool = False,
        arrival: bool = False,
        route: str | None = None,
    ) -> Response:
        """Run ``handler`` and turn whatever it raises into the Status JSON with the right HTTP status.

        A ``counted`` request is refused with 503 and Retry-After at the admission's cap on calls in flight
        (infra.admission.CheckoutAdmission); the handlers admit new checkouts (guest token, new cart), which may
        wait in its queue for a slot and are refused, before anything is done for them, only when their expected
        wait is too long; an ``arrival`` (a guest token's request) is counted apart from the calls of checkouts
        under way, so a flood of them never gets those refused. Webhooks pass none: a provider's notification is
        never turned away for load. A backend's own UNAVAILABLE with RetryInfo gets the same Retry-After. Each
        answer is counted by ``route`` (its template; default: the one routing matched) and status
        (gateway.metrics).
        """
        started = time.perf_counter()
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        rid = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request_id_var.set(rid)
        headers: dict[str, str] = {}
        in_flight = False
        try:
            if counted:
                _refused_if_overloaded(lambda: self._admission.call_started(arrival=arrival))
                in_flight = True
            response = await handler(request, rid)
        except HttpRefusal as exc:
            response = error_response(exc.status, exc.http_status)
            headers.update(exc.headers)
        except errors.DomainError as exc:
            response = error_response(gw_status.from_domain_error(exc))
            headers.update(_retry_after(getattr(exc, "retry_after_s", None)))
        except grpc.aio.AioRpcError as exc:
            response = error_response(gw_status.from_rpc_error(exc))
            headers.update(_retry_after(retry_delay(exc)))
        except Exception:
            log.exception("unhandled error serving %s %s", request.method, request.url.path)
            internal = gw_status.make_status(grpc.StatusCode.INTERNAL, "internal error", errors.Reason.INTERNAL)
            response = error_response(internal)
        finally:
            if in_flight:
                self._admission.call_ended(arrival=arrival)
        response.headers.update(headers)
        response.headers[REQUEST_ID_HEADER] = rid
        response.headers["Cache-Control"] = "no-store"
        observe(request, response.status_code, time.perf_counter() - started, route)
        return response

    async def _transcode(self, request: Request, rid: str) -> Response:
        identity: Identity | None = None
        auth_error: Unauthenticated | None = None
        try:
            identity = await self._authenticate(request)
        except Unauthenticated as exc:
            auth_error = exc
        # Counted before the 401 so a flood of bad tokens is limited too (by client IP).
        await self._rate_limit(request, subject=identity.subject if identity is not None else None)
        if auth_error is not None:
            raise auth_error
        if identity is None:
            raise Unauthenticated("missing credentials: send 'Authorization: Bearer <token>'")
        if identity.is_service:
            # Service tokens are for calls between Kassa's own processes, never through the public edge.
            raise errors.PermissionDenied("service tokens are not accepted at the gateway")
        match = self._match(request)
        route = match.route
        tracing.rename(f"{request.method} {route.template.template}")
        if route.template.template.startswith(ADMIN_PREFIX) and not identity.is_admin:
            raise errors.PermissionDenied("this route needs the admin role")
        body = await self._read_body(request) if route.body else b""
        message = build_request(
            route,
            RequestParts(
                path_params=match.path_params,
                query=request.query_params.multi_items(),
                body=body,
                idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
            ),
        )
        metadata = (("authorization", request.headers["authorization"]), ("x-request-id", rid))
        tracing.annotate_message(message)
        # A new cart may start a checkout (and wait for a slot); any other call of the caller's checkout goes at once.
        ticket = await self._enter(identity.subject, new_work=route.rpc.path == _CREATE_CART.path)
        answered = False
        try:
            reply: Message
            if route.rpc.backend == AUDIT_BACKEND:
                reply = await list_audit_entries(self.backends, route.rpc, message, metadata)
            elif route.rpc.backend == OPS_BACKEND:
                reply = await outbox_status(self.backends, route.rpc, message, metadata)
            else:
                reply = await self.backends.call(route.rpc, message, metadata)
            answered = True
        finally:
            # ConfirmCheckout's answer ends the checkout, and so does an error (the client mostly gives up there).
            self._admission.leave(ticket, ended=not answered or route.rpc.path == _CONFIRM.path)
        tracing.annotate_message(reply)
        return JSONResponse(render(reply))

    async def _guest(self, request: Request, _rid: str) -> Response:
        """A guest identity: a fresh subject, so a guest's cart is owned like any customer's."""
        # Per client IP: a fresh subject per guest would otherwise be a fresh per-subject allowance.
        await self._rate_limit(request, guest_token=True)
        if self.settings.jwt_jwks_url:
            raise HttpRefusal(
                gw_status.make_status(
                    grpc.StatusCode.UNIMPLEMENTED,
                    "guest tokens come from the identity provider when KASSA_JWT_JWKS_URL is set",
                    errors.Reason.UNIMPLEMENTED,
                ),
                501,
            )
        # A guest token starts a checkout: it waits for a slot, and the slot is bound to the subject minted.
        ticket = await self._enter(None, new_work=True)
        subject: str | None = None
        try:
            minted = f"guest-{uuid.uuid4().hex}"
            token = mint_token(
                self.settings.jwt_secret,
                minted,
                guest=True,
                ttl_seconds=self.config.guest_token_ttl_seconds,
                issuer=self.settings.jwt_issuer,
                audience=self.settings.jwt_audience,
            )
            subject = minted
        finally:
            self._admission.leave(ticket, ended=subject is None, key=subject)
        return JSONResponse({"token": token, "customerId": subject})

    async def _webhook(self, request: Request, _rid: str) -> Response:
        """Check the provider's signature on the raw bytes, then hand them to payment unchanged.

        Refusing unsigned bodies here keeps forged payment outcomes away from the payment service
        (DESIGN.md §4 invariants 2 and 3), which checks the signature again.
        """
        provider = request.path_params["provider"]
        tracing.rename(f"{request.method} /v1/payments/webhooks/{{provider}}")
        if not _PROVIDER.match(provider):
            raise errors.InvalidArgument("provider", "must be 1-64 lowercase letters, digits, '-' or '_'")
        raw = await self._read_body(request)
        signature = request.headers.get(webhook_signature.SIGNATURE_HEADER, "")
        try:
            # The current secret and, during a rotation, the previous one.
            webhook_signature.verify(self.settings.webhook_secrets, raw, signature)
        except webhook_signature.SignatureError as exc:
            raise errors.InvalidArgument("signature", f"{webhook_signature.SIGNATURE_HEADER} header: {exc}") from exc
        message = payment_service_pb2.HandleWebhookRequest(provider=provider, payload=raw, signature=signature)
        reply = cast(
            payment_service_pb2.HandleWebhookResponse,
            await self.backends.call(_HANDLE_WEBHOOK, message, call_metadata(self._creds)),
        )
        return JSONResponse({"received": True, "duplicate": reply.duplicate})

    # -- helpers -----------------------------------------------------------------------------------

    async def _enter(self, subject: str | None, *, new_work: bool) -> Ticket:
        """A call of ``subject``'s checkout starts (infra.admission.CheckoutAdmission): 503 with Retry-After when a
        new checkout is refused."""
        try:
            return await self._admission.enter(subject, new_work=new_work)
        except Overloaded as exc:
            raise HttpRefusal(_at_capacity(exc), 503, {"Retry-After": exc.retry_after_header}) from exc

    async def _authenticate(self, request: Request) -> Identity | None:
        """The caller's customer token (or a service's); JWKS fetches run in a thread, off the event loop."""
        return await self.authenticate_header(request.headers.get("authorization"))

    async def authenticate_header(self, header: str | None) -> Identity | None:
        """The identity in an Authorization header (None without one), for the console's own routes."""
        return await self._verifier.authenticate(header)

    def client_key(self, request: Request) -> str:
        """The client's IPv4 address or IPv6 /64, believing X-Forwarded-For only from trusted proxies."""
        peer = request.client.host if request.client else None
        forwarded = tuple(request.headers.getlist("x-forwarded-for"))
        # Worked out once per (peer, X-Forwarded-For): a client's every request comes with the same pair.
        cached = self._client_keys.get((peer, forwarded))
        if cached is None:
            cached = client_key(client_ip(peer, forwarded, self.config.trusted_proxies))
            if len(self._client_keys) >= _CLIENT_KEYS_KEPT:
                self._client_keys.clear()
            self._client_keys[peer, forwarded] = cached
        return cached

    async def _rate_limit(self, request: Request, *, subject: str | None = None, guest_token: bool = False) -> None:
        """Count the request per client IP, and per token ``subject`` (a caller without one by its IP) or,
        for ``guest_token``, as a guest token minted by its IP."""
        if self._limiter is None:
            return
        buckets: list[tuple[Limit, str]] = []
        if self._ip_limit is not None:
            buckets.append((self._ip_limit, self.client_key(request)))
        if guest_token:
            if self._guest_limit is not None:
                buckets.append((self._guest_limit, self.client_key(request)))
        elif self._subject_limit is not None:
            caller = f"sub:{subject}" if subject is not None else f"ip:{self.client_key(request)}"
            buckets.append((self._subject_limit, caller))
        decision = await self._limiter.hit(*buckets)
        if decision.allowed or decision.limit is None:
            return
        refused = decision.limit
        retry = str(decision.retry_after_seconds)
        status = gw_status.make_status(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"rate limit {refused.name!r} exceeded: {refused.requests} requests per {refused.window_seconds} s;"
            f" retry in {retry} s",
            errors.Reason.RATE_LIMITED,
            {
                "limit": refused.name,
                "limit_requests": str(refused.requests),
                "window_seconds": str(refused.window_seconds),
                "retry_after_seconds": retry,
            },
        )
        raise HttpRefusal(status, 429, {"Retry-After": retry})

    def _match(self, request: Request) -> RouteMatch:
        raw = request.scope.get("raw_path")
        path = raw.decode("latin-1").split("?", 1)[0] if raw else quote(request.url.path)
        try:
            match = self.routes.match(request.method, path)
        except MethodNotAllowed as exc:
            status = gw_status.make_status(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{request.method} is not allowed here; use {', '.join(exc.allowed)}",
                errors.Reason.UNIMPLEMENTED,
            )
            raise HttpRefusal(status, 405, {"Allow": ", ".join(exc.allowed)}) from exc
        except RouteNotFound as exc:
            raise errors.NotFound(f"no route for {request.method} {request.url.path}") from exc
        request.scope[ROUTE_SCOPE_KEY] = match.route.template.template
        return match

    async def _read_body(self, request: Request) -> bytes:
        """The raw body, refused with 413 beyond config.max_body_bytes without buffering more."""
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length", "")
        too_large = declared.isdigit() and int(declared) > limit
        chunks: list[bytes] = []
        size = 0
        if not too_large:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    too_large = True
                    break
                chunks.append(chunk)
        if too_large:
            status = gw_status.make_status(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request body larger than {limit} bytes",
                errors.Reason.INVALID_ARGUMENT,
            )
            raise HttpRefusal(status, 413)
        return b"".join(chunks)


def _cors(config: GatewayConfig) -> list[Middleware]:
    """Preflights and CORS headers for the configured origins (KASSA_CORS_ORIGINS); none, no middleware."""
    if not config.cors_origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", IDEMPOTENCY_HEADER, REQUEST_ID_HEADER],
            expose_headers=[REQUEST_ID_HEADER, "Retry-After"],
            max_age=600,
        )
    ]


def create_app(
    settings: Settings, config: GatewayConfig | None = None, console: ConsoleConfig | None = None
) -> Starlette:
    """The ASGI app; channels and Redis open in its lifespan, so run it with lifespan enabled."""
    gateway = Gateway(settings, config or GatewayConfig.from_env(development=settings.environment == "development"))
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    app = Starlette(
        middleware=_cors(gateway.config),
        routes=[
            # The API first (Starlette tries each route in turn): the two /v1/ routes of the gateway's own, then
            # every other /v1/ path to the protos' routes, without matching it against the routes below.
            Route("/v1/auth/guest", gateway.guest, methods=["POST"]),
            Route("/v1/payments/webhooks/{provider}", gateway.webhook, methods=["POST"]),
            Route("/v1/{path:path}", gateway.transcode, methods=methods),
            Route("/healthz", gateway.healthz, methods=["GET"]),
            Route("/readyz", gateway.readyz, methods=["GET"]),
            Route("/openapi.json", gateway.openapi, methods=["GET"]),
            Route("/docs", gateway.docs, methods=["GET"]),
            Route("/metrics", gateway.metrics, methods=["GET"]),
            *console_routes(console or ConsoleConfig.from_env(os.environ), gateway.authenticate_header),
            Route("/{path:path}", gateway.transcode, methods=methods),
        ],
        exception_handlers={HTTPException: gateway.http_exception},
        lifespan=gateway.lifespan,
    )
    app.state.gateway = gateway
    return app
