"""The sandbox provider's HTTP API (JSON, Stripe-like): payment intents, capture, cancel, refunds, 3-D Secure.

Mutating calls need an ``Idempotency-Key`` header (optional on cancel): the same
key with the same request replays the first answer (``Idempotent-Replayed:
true``), the same key with a different request is a 409 ``idempotency_key_reused``.
As at a real processor, a request refused by validation stores nothing and a
5xx is not stored either, so it can be retried.
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

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from infra.config import Settings
from payment.sandbox.state import ApiError, Outcome, SandboxState, StoredResponse
from payment.sandbox.webhooks import WebhookSender

__all__ = ["MAX_TIMEOUT_SECONDS", "SandboxApi", "SandboxConfig", "create_app"]

MAX_TIMEOUT_SECONDS = 120.0
_MAX_AMOUNT = 99_999_999_999
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")


@dataclass(frozen=True)
class SandboxConfig:
    """Sandbox-only knobs (not part of the shared Settings)."""

    webhook_url: str | None = None
    # How long tok_timeout keeps the client waiting; bounded so a stuck test cannot hang forever.
    timeout_seconds: float = 30.0
    webhook_attempts: int = 4

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> SandboxConfig:
        env = dict(os.environ if environ is None else environ)
        raw = env.get("KASSA_SANDBOX_TIMEOUT_SECONDS") or "30"
        try:
            timeout = float(raw)
        except ValueError as exc:
            raise ValueError(f"KASSA_SANDBOX_TIMEOUT_SECONDS must be a number, got {raw!r}") from exc
        return cls(
            webhook_url=env.get("KASSA_SANDBOX_WEBHOOK_URL") or None,
            timeout_seconds=min(max(timeout, 0.0), MAX_TIMEOUT_SECONDS),
        )


def _error(exc: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(exc.body, status_code=exc.status, headers=headers)


def _invalid(param: str, message: str, code: str = "parameter_invalid") -> ApiError:
    return ApiError(400, "invalid_request_error", code, message, param=param)


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
        self.state = SandboxState()
        self.config = config
        self.events: list[dict[str, Any]] = []
        self.sender: WebhookSender | None = None
        self._settings = settings
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        if not self.config.webhook_url:
            yield
            return
        async with httpx.AsyncClient(timeout=5.0) as client:
            self.sender = WebhookSender(
                self.config.webhook_url, self._settings.webhook_secret, client, attempts=self.config.webhook_attempts
            )
            try:
                yield
            finally:
                await self.sender.aclose()
                self.sender = None

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
        for event_type, obj in outcome.events:
            event = {
                "id": f"evt_{secrets.token_hex(12)}",
                "object": "event",
                "type": event_type,
                "created": int(time.time()),
                "data": {"object": obj},
            }
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
                    self.state.responses[key] = stored
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
        try:
            body = await _json_body(request)
            params = _create_params(body)
        except ApiError as exc:
            return _error(exc)
        key = request.headers.get("idempotency-key", "").strip()
        base_url = str(request.base_url).rstrip("/")
        return await self._idempotent(request, body, lambda: self.state.create_intent(params, key, base_url))

    async def list_intents(self, request: Request) -> Response:
        key = request.query_params.get("idempotency_key", "")
        if not key:
            return _error(_invalid("idempotency_key", "pass ?idempotency_key=<key>", "parameter_missing"))
        async with self._lock:
            data = [i.to_json() for i in self.state.find_by_key(key)]
        return JSONResponse({"object": "list", "data": data, "has_more": False})

    async def get_intent(self, request: Request) -> Response:
        async with self._lock:
            try:
                return JSONResponse(self.state.intent(request.path_params["intent_id"]).to_json())
            except ApiError as exc:
                return _error(exc)

    async def capture(self, request: Request) -> Response:
        try:
            body = await _json_body(request)
            amount = _amount(body, "amount_to_capture", required=False)
        except ApiError as exc:
            return _error(exc)
        intent_id = request.path_params["intent_id"]
        return await self._idempotent(request, body, lambda: self.state.capture(intent_id, amount))

    async def cancel(self, request: Request) -> Response:
        try:
            body = await _json_body(request)
        except ApiError as exc:
            return _error(exc)
        intent_id = request.path_params["intent_id"]
        return await self._idempotent(request, body, lambda: self.state.cancel(intent_id), required=False)

    async def refund(self, request: Request) -> Response:
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
