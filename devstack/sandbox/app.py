"""The sandbox provider's HTTP API (JSON, Stripe-like): payment intents, capture, cancel, refunds, 3-D Secure.

Mutating calls need an ``Idempotency-Key`` header (optional on cancel): the same
key with the same request replays the first answer (``Idempotent-Replayed:
true``), the same key with a different request is a 409 ``idempotency_key_reused``.
As at a real processor, a request refused by validation stores nothing and a
5xx is not stored either, so it can be retried.

The ledger persists in SQLite at ``KASSA_SANDBOX_DB`` (default ``.kassa/sandbox/ledger.sqlite3``,
under the local stack's data folder; ``:memory:`` for none). Intents are listed newest first,
Stripe-style: ``GET /v1/payment_intents?limit=&starting_after=`` answers ``{data, has_more}``;
``idempotency_key=`` filters by the key an intent was created with (how the payment service finds
the intent of an authorization whose answer it never got), ``created[gt]=`` / ``created[lte]=`` by
creation time (how its sweeper reconciles a time range of intents against its payments). Every
intent carries Kassa's metadata (``payment_id``, ``kassa_session_id``, and ``kassa_order_id`` once
captured) for reconciliation against payments and orders.
Webhooks are retried with exponential backoff until the receiver answers 2xx (bounded), and the
ones not yet delivered are sent again after a restart.

Chaos (``KASSA_FAULTS``, see :mod:`infra.faults`): the points ``sandbox.authorize`` (create intent),
``sandbox.capture``, ``sandbox.void`` (cancel) and ``sandbox.refund`` take ``error`` (an outage: HTTP
503 with a JSON error, nothing done and nothing stored, so a retry with the key does the work) and
``delay:<seconds>`` (the request reaches the processor that much later: a client that gave up meanwhile
does not know whether it will be done); ``sandbox.webhook`` is handled by the webhook sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from devstack.sandbox.ledger import MEMORY, Ledger
from devstack.sandbox.state import ApiError, Outcome, SandboxState, StoredResponse
from devstack.sandbox.webhooks import WebhookSender
from infra import faults
from infra.config import Settings

__all__ = ["DEFAULT_DB", "MAX_TIMEOUT_SECONDS", "SandboxApi", "SandboxConfig", "create_app"]

DEFAULT_DB = ".kassa/sandbox/ledger.sqlite3"
_DEFAULT_PAGE = 10
_MAX_PAGE = 100

MAX_TIMEOUT_SECONDS = 120.0
_MAX_AMOUNT = 99_999_999_999
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")


@dataclass(frozen=True)
class SandboxConfig:
    """Sandbox-only knobs (not part of the shared Settings)."""

    webhook_url: str | None = None
    # How long tok_timeout keeps the client waiting; bounded so a stuck test cannot hang forever.
    timeout_seconds: float = 30.0
    # Delivery attempts per webhook, waiting backoff, 2 x backoff, 4 x ... (at most backoff_max) between them.
    webhook_attempts: int = 8
    webhook_backoff_seconds: float = 1.0
    webhook_backoff_max_seconds: float = 60.0
    # The SQLite ledger; ":memory:" keeps nothing across restarts.
    db_path: str = MEMORY
    # A webhook held back by the fault ``sandbox.webhook=reorder`` goes out after the next webhook of its
    # intent, or after this long when none follows.
    webhook_reorder_seconds: float = 2.0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> SandboxConfig:
        env = dict(os.environ if environ is None else environ)
        timeout = _seconds(env, "KASSA_SANDBOX_TIMEOUT_SECONDS", 30.0)
        reorder = _seconds(env, "KASSA_SANDBOX_WEBHOOK_REORDER_SECONDS", 2.0)
        return cls(
            webhook_url=env.get("KASSA_SANDBOX_WEBHOOK_URL") or None,
            timeout_seconds=min(max(timeout, 0.0), MAX_TIMEOUT_SECONDS),
            db_path=env.get("KASSA_SANDBOX_DB") or DEFAULT_DB,
            webhook_reorder_seconds=min(max(reorder, 0.0), MAX_TIMEOUT_SECONDS),
        )


def _seconds(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name) or str(default)
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


def _error(exc: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(exc.body, status_code=exc.status, headers=headers)


def _invalid(param: str, message: str, code: str = "parameter_invalid") -> ApiError:
    return ApiError(400, "invalid_request_error", code, message, param=param)


async def _outage(request: Request, operation: str) -> Response | None:
    """The fault point ``sandbox.<operation>``: a 503 for ``error`` (nothing done), after sleeping for ``delay``."""
    # The request has arrived (a client that gives up during a delay does not take it back).
    await request.body()
    try:
        await faults.ahit(f"sandbox.{operation}")
    except faults.InjectedFault:
        return _error(
            ApiError(503, "api_error", "service_unavailable", "The processor is temporarily unavailable; retry later.")
        )
    return None


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise _invalid("body", "the request body must be JSON", "invalid_json") from exc
    if not isinstance(body, dict):
        raise _invalid("body", "the request body must be a JSON object", "invalid_json")
    return body


def _amount(body: dict[str, Any], name: str, *, required: bool) -> int | None:
    value = body.get(name)
    if value is None:
        if required:
            raise _invalid(name, f"missing required param: {name}", "parameter_missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_AMOUNT:
        raise _invalid(name, f"{name} must be a positive integer in the currency's minor unit")
    return value


_TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def _create_params(body: dict[str, Any]) -> dict[str, Any]:
    amount = _amount(body, "amount", required=True)
    currency = body.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise _invalid("currency", "currency must be a three-letter ISO 4217 code")
    method = body.get("payment_method")
    if not isinstance(method, str) or not method:
        raise _invalid("payment_method", "missing required param: payment_method", "parameter_missing")
    if body.get("capture_method", "manual") != "manual":
        raise _invalid("capture_method", "the sandbox supports capture_method 'manual' only")
    return_url = body.get("return_url") or ""
    if not isinstance(return_url, str):
        raise _invalid("return_url", "return_url must be a string")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _invalid("metadata", "metadata must be an object of strings")
    return {
        "amount": amount,
        "currency": currency.lower(),
        "payment_method": method,
        "return_url": return_url,
        "metadata": metadata,
    }


class SandboxApi:
    """Endpoints over one :class:`SandboxState`, serialized by one lock."""

    def __init__(self, settings: Settings, config: SandboxConfig) -> None:
        self.state = SandboxState(Ledger(config.db_path))
        self.config = config
        self.events: list[dict[str, Any]] = []
        self.sender: WebhookSender | None = None
        self._settings = settings
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        try:
            if not self.config.webhook_url:
                yield
                return
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5.0)) as client:
                self.sender = WebhookSender(
                    self.config.webhook_url,
                    self._settings.webhook_secret,
                    client,
                    attempts=self.config.webhook_attempts,
                    backoff_seconds=self.config.webhook_backoff_seconds,
                    backoff_max_seconds=self.config.webhook_backoff_max_seconds,
                    reorder_seconds=self.config.webhook_reorder_seconds,
                    on_done=self._delivered,
                )
                # Whatever a previous run did not get acknowledged goes out again.
                for event in self.state.ledger.pending_webhooks():
                    self.sender.send(event)
                try:
                    yield
                finally:
                    await self.sender.aclose()
                    self.sender = None
        finally:
            self.state.ledger.close()

    def _delivered(self, event_id: str, delivered: bool) -> None:
        self.state.ledger.mark_webhook(event_id, "delivered" if delivered else "failed")

    def stop_stalling(self) -> None:
        """Answer held-back (tok_timeout) requests now, so a server can stop without waiting for them."""
        self._stopping.set()

    def routes(self) -> list[Route]:
        return [
            Route("/v1/payment_intents", self.create_intent, methods=["POST"]),
            Route("/v1/payment_intents", self.list_intents, methods=["GET"]),
            Route("/v1/payment_intents/{intent_id}", self.get_intent, methods=["GET"]),
            Route("/v1/payment_intents/{intent_id}/capture", self.capture, methods=["POST"]),
            Route("/v1/payment_intents/{intent_id}/cancel", self.cancel, methods=["POST"]),
            Route("/v1/refunds", self.refund, methods=["POST"]),
            Route("/v1/3ds/{intent_id}", self.three_ds_page, methods=["GET"]),
            Route("/v1/3ds/{intent_id}/complete", self.three_ds_complete, methods=["POST"]),
            Route("/v1/3ds/{intent_id}/fail", self.three_ds_fail, methods=["POST"]),
        ]

    # -- plumbing --------------------------------------------------------------------------------

    def _emit(self, outcome: Outcome) -> None:
        """Persist the request's changes with its webhooks (pending delivery), then send them."""
        events = [
            {
                "id": f"evt_{secrets.token_hex(12)}",
                "object": "event",
                "type": event_type,
                "created": int(time.time()),
                "data": {"object": obj},
            }
            for event_type, obj in outcome.events
        ]
        self.state.commit(events if self.sender is not None else None)
        for event in events:
            self.events.append(event)
            if self.sender is not None:
                self.sender.send(event)

    async def _run(self, op: Callable[[], Outcome]) -> Outcome:
        async with self._lock:
            try:
                outcome = op()
            except ApiError as exc:
                outcome = Outcome(exc.status, exc.body)
            self._emit(outcome)
        return outcome

    async def _idempotent(
        self, request: Request, body: dict[str, Any], op: Callable[[], Outcome], *, required: bool = True
    ) -> Response:
        key = request.headers.get("idempotency-key", "").strip()
        if not key:
            if required:
                return _error(
                    _invalid("Idempotency-Key", "this request needs an Idempotency-Key header", "parameter_missing")
                )
            outcome = await self._run(op)
            return JSONResponse(outcome.body, status_code=outcome.status)
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        fingerprint = hashlib.sha256(f"{request.method} {request.url.path}\n{canonical}".encode()).hexdigest()
        replayed = False
        async with self._lock:
            stored = self.state.responses.get(key)
            if stored is not None:
                if stored.fingerprint != fingerprint:
                    return _error(
                        ApiError(
                            409,
                            "idempotency_error",
                            "idempotency_key_reused",
                            "Keys for idempotent requests can only be used with the same parameters they were "
                            "first used with.",
                        )
                    )
                replayed = True
            else:
                try:
                    outcome = op()
                except ApiError as exc:
                    outcome = Outcome(exc.status, exc.body)
                if outcome.status < 500:
                    stored = StoredResponse(fingerprint, outcome.status, outcome.body, outcome.slow)
                    self.state.store_response(key, stored)
                self._emit(outcome)
                if stored is None:
                    return JSONResponse(outcome.body, status_code=outcome.status)
        if stored.slow:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.config.timeout_seconds)
        headers = {"Idempotent-Replayed": "true"} if replayed else None
        return JSONResponse(stored.body, status_code=stored.status, headers=headers)

    # -- endpoints -------------------------------------------------------------------------------

    async def create_intent(self, request: Request) -> Response:
        if (down := await _outage(request, "authorize")) is not None:
            return down
        try:
            body = await _json_body(request)
            params = _create_params(body)
        except ApiError as exc:
            return _error(exc)
        key = request.headers.get("idempotency-key", "").strip()
        base_url = str(request.base_url).rstrip("/")
        if (parent := request.headers.get("traceparent")) and _TRACEPARENT.match(parent):
            # The caller's W3C trace, kept on the intent and sent back with its webhooks (webhooks.py), so the
            # webhook that completes a 3-D Secure payment continues the checkout's trace. Not part of the
            # request's idempotency fingerprint (the body): a retry from another trace is the same request.
            params["metadata"] = {**params["metadata"], "traceparent": parent}
        return await self._idempotent(request, body, lambda: self.state.create_intent(params, key, base_url))

    async def list_intents(self, request: Request) -> Response:
        """Newest first, ``limit`` (1-100, default 10) after ``starting_after``; optionally by ``idempotency_key``
        and by creation time, ``created[gt]`` and ``created[lte]`` (epoch seconds)."""
        query = request.query_params
        raw_limit = query.get("limit") or str(_DEFAULT_PAGE)
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= _MAX_PAGE:
            return _error(_invalid("limit", f"limit must be an integer between 1 and {_MAX_PAGE}"))
        created: dict[str, int | None] = {}
        for name in ("gt", "lte"):
            raw = query.get(f"created[{name}]")
            if raw is not None and not raw.lstrip("-").isdigit():
                return _error(_invalid(f"created[{name}]", f"created[{name}] must be a Unix timestamp in seconds"))
            created[name] = None if raw is None else int(raw)
        async with self._lock:
            try:
                page, has_more = self.state.page(
                    int(raw_limit),
                    query.get("starting_after") or None,
                    query.get("idempotency_key") or None,
                    created_gt=created["gt"],
                    created_lte=created["lte"],
                )
            except ApiError as exc:
                return _error(exc)
            data = [i.to_json() for i in page]
        return JSONResponse({"object": "list", "url": "/v1/payment_intents", "data": data, "has_more": has_more})

    async def get_intent(self, request: Request) -> Response:
        async with self._lock:
            try:
                return JSONResponse(self.state.intent(request.path_params["intent_id"]).to_json())
            except ApiError as exc:
                return _error(exc)

    async def capture(self, request: Request) -> Response:
        if (down := await _outage(request, "capture")) is not None:
            return down
        try:
            body = await _json_body(request)
            amount = _amount(body, "amount_to_capture", required=False)
            metadata = body.get("metadata") or {}
            if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
                raise _invalid("metadata", "metadata must be an object of strings")
        except ApiError as exc:
            return _error(exc)
        intent_id = request.path_params["intent_id"]
        return await self._idempotent(request, body, lambda: self.state.capture(intent_id, amount, metadata))

    async def cancel(self, request: Request) -> Response:
        if (down := await _outage(request, "void")) is not None:
            return down
        try:
            body = await _json_body(request)
        except ApiError as exc:
            return _error(exc)
        intent_id = request.path_params["intent_id"]
        return await self._idempotent(request, body, lambda: self.state.cancel(intent_id), required=False)

    async def refund(self, request: Request) -> Response:
        if (down := await _outage(request, "refund")) is not None:
            return down
        try:
            body = await _json_body(request)
            amount = _amount(body, "amount", required=False)
            intent_id = body.get("payment_intent")
            if not isinstance(intent_id, str) or not intent_id:
                raise _invalid("payment_intent", "missing required param: payment_intent", "parameter_missing")
        except ApiError as exc:
            return _error(exc)
        return await self._idempotent(request, body, lambda: self.state.refund(intent_id, amount))

    async def three_ds_page(self, request: Request) -> Response:
        """The page the customer is redirected to; visiting it completes authentication."""
        outcome = await self._run(lambda: self.state.complete_action(request.path_params["intent_id"], succeed=True))
        if outcome.status != 200:
            return JSONResponse(outcome.body, status_code=outcome.status)
        if outcome.body.get("return_url"):
            return RedirectResponse(outcome.body["return_url"], status_code=303)
        return HTMLResponse("<html><body><p>3-D Secure authentication complete.</p></body></html>")

    async def three_ds_complete(self, request: Request) -> Response:
        outcome = await self._run(lambda: self.state.complete_action(request.path_params["intent_id"], succeed=True))
        return JSONResponse(outcome.body, status_code=outcome.status)

    async def three_ds_fail(self, request: Request) -> Response:
        outcome = await self._run(lambda: self.state.complete_action(request.path_params["intent_id"], succeed=False))
        return JSONResponse(outcome.body, status_code=outcome.status)


def create_app(settings: Settings, config: SandboxConfig | None = None) -> Starlette:
    """The sandbox as an ASGI app; ``app.state.api`` exposes its ledger (``.state``) and events to tests."""
    api = SandboxApi(settings, config or SandboxConfig.from_env())
    app = Starlette(routes=api.routes(), lifespan=api.lifespan)
    app.state.api = api
    return app
