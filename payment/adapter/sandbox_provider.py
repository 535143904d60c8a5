"""SandboxProvider: the PaymentProvider port over the sandbox processor's JSON HTTP API.

Every mutating request carries an ``Idempotency-Key``, so retrying one (here, on a
connection failure or 5xx, bounded with jittered backoff; or later, by the caller)
never creates a second intent, capture or refund. A timeout is not retried here:
the caller's deadline is nearly spent and the outcome is unknown, which the caller
records (PENDING) and resolves with the same key.

The HTTP client is aiohttp: about 0.3 ms of CPU per request on the reference machine, against 1.4-1.7 ms for
httpx, and a checkout makes two of these calls (see the README's Performance section).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from infra import tracing
from infra.webhook_signature import SignatureError, verify
from kernel.errors import InvalidArgument, PermissionDenied
from payment.model.provider import (
    EventKind,
    IntentRequest,
    IntentStatus,
    ProviderDeclined,
    ProviderEvent,
    ProviderIntent,
    ProviderRefund,
    ProviderRejected,
    ProviderUnavailable,
)

__all__ = ["SandboxProvider", "provider_session"]

# An intent's or refund's id in a path: spans are named by the route, not by the object.
_ID_SEGMENT = re.compile(r"/(?:pi|re|ch)_[A-Za-z0-9]+")

_STATUSES = {
    "requires_action": IntentStatus.REQUIRES_ACTION,
    "requires_capture": IntentStatus.REQUIRES_CAPTURE,
    "succeeded": IntentStatus.SUCCEEDED,
    "canceled": IntentStatus.CANCELED,
    "requires_payment_method": IntentStatus.FAILED,
}
_EVENTS = {
    "payment_intent.amount_capturable_updated": EventKind.AUTHORIZED,
    "payment_intent.succeeded": EventKind.CAPTURED,
    "payment_intent.payment_failed": EventKind.FAILED,
    "payment_intent.canceled": EventKind.CANCELED,
    "charge.refunded": EventKind.REFUNDED,
}


_IDLE_SECONDS = 4.0


def provider_session(base_url: str, timeout_seconds: float) -> aiohttp.ClientSession:
    """The HTTP session of one provider: calls go under ``base_url`` (a path in it is kept as a prefix), each
    within ``timeout_seconds`` all told. Whoever opens it closes it (bootstrap, or a test).

    The provider's certificate is checked against the system's trust store (``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR`` point it elsewhere). An idle connection is kept 4 s, under the 5 s that common servers
    (uvicorn, the sandbox's, among them) keep theirs: a post on a connection the server is closing at that moment
    would fail (``network_error``), and a post is not sent again once it may have been received.
    """
    return aiohttp.ClientSession(
        base_url=base_url.rstrip("/") + "/",
        timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        connector=aiohttp.TCPConnector(keepalive_timeout=_IDLE_SECONDS),
    )


@dataclass(frozen=True, slots=True)
class _Answer:
    """An HTTP answer, read whole before the connection goes back to the pool."""

    status: int
    reason: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)  # ValueError (UnicodeDecodeError among them) when it is not JSON


class _Retryable(Exception):
    def __init__(self, answer: _Answer) -> None:
        super().__init__(f"HTTP {answer.status}")
        self.answer = answer


# Retried here: no connection (refused, no route, a name that does not resolve, a TLS handshake that fails), or a
# 5xx. Waits between posts: 0.05 s x 2^(n-1) plus up to 0.1 s of jitter before post n + 1, at most 0.5 s
# (tenacity's wait_exponential_jitter(multiplier=0.05, max=0.5, jitter=0.1)).
_RETRYABLE = (aiohttp.ClientConnectorError, _Retryable)
_LATER_WAITS = wait_exponential_jitter(multiplier=0.1, max=0.5, jitter=0.1)  # counted from the second post


def _first_wait() -> float:
    return min(0.05 + random.uniform(0, 0.1), 0.5)


def _intent(obj: dict[str, Any]) -> ProviderIntent:
    error = obj.get("last_payment_error") or {}
    next_action = obj.get("next_action") or {}
    return ProviderIntent(
        intent_id=str(obj["id"]),
        status=_STATUSES.get(str(obj.get("status")), IntentStatus.FAILED),
        amount_minor=int(obj.get("amount") or 0),
        amount_capturable=int(obj.get("amount_capturable") or 0),
        amount_received=int(obj.get("amount_received") or 0),
        amount_refunded=int(obj.get("amount_refunded") or 0),
        next_action_url=next_action.get("redirect_url") or None,
        failure_code=error.get("decline_code") or error.get("code") or None,
        failure_message=error.get("message") or None,
        metadata={str(k): str(v) for k, v in (obj.get("metadata") or {}).items()},
        created=int(obj.get("created") or 0),
    )


def _answered_intent(obj: dict[str, Any]) -> ProviderIntent:
    """The intent in an API answer; an answer that is not one leaves the outcome unknown."""
    try:
        return _intent(obj)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise ProviderUnavailable(
            "invalid_response", f"the provider's answer is not a payment intent ({exc!r})"
        ) from exc


class SandboxProvider:
    def __init__(
        self,
        client: aiohttp.ClientSession,
        webhook_secret: str | Sequence[str],
        *,
        name: str = "sandbox",
        attempts: int = 3,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``client`` has the provider's base URL and the timeout (``provider_session``); bootstrap owns and closes it.

        ``sleep`` waits between posts (tests record the waits instead: patching ``asyncio.sleep`` itself would
        also stop every other task on the loop from sleeping).

        ``webhook_secret``: the secret webhooks are signed with, or several (current first, then the one being
        rotated out); a webhook signed by any of them is accepted.
        """
        self.name = name
        self._client = client
        self._secret = webhook_secret
        self._attempts = attempts
        self._sleep = sleep

    async def create_intent(self, request: IntentRequest, idempotency_key: str) -> ProviderIntent:
        body = {
            "amount": request.amount_minor,
            "currency": request.currency_code.lower(),
            "payment_method": request.payment_method,
            "capture_method": "manual",
            "return_url": request.return_url,
            "metadata": request.metadata,
        }
        return _answered_intent(await self._call("POST", "v1/payment_intents", body, idempotency_key))

    def available(self) -> bool:
        return True

    async def capture(
        self, intent_id: str, amount_minor: int, idempotency_key: str, metadata: Mapping[str, str] | None = None
    ) -> ProviderIntent:
        body: dict[str, Any] = {"amount_to_capture": amount_minor}
        if metadata:
            body["metadata"] = dict(metadata)
        return _answered_intent(
            await self._call("POST", f"v1/payment_intents/{intent_id}/capture", body, idempotency_key)
        )

    async def cancel(self, intent_id: str, idempotency_key: str) -> ProviderIntent:
        return _answered_intent(await self._call("POST", f"v1/payment_intents/{intent_id}/cancel", {}, idempotency_key))

    async def refund(self, intent_id: str, amount_minor: int, idempotency_key: str) -> ProviderRefund:
        body = {"payment_intent": intent_id, "amount": amount_minor}
        obj = await self._call("POST", "v1/refunds", body, idempotency_key)
        try:
            return ProviderRefund(refund_id=str(obj["id"]), amount_minor=int(obj["amount"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderUnavailable("invalid_response", f"the provider's answer is not a refund ({exc!r})") from exc

    async def get_intent(self, intent_id: str) -> ProviderIntent:
        return _answered_intent(await self._call("GET", f"v1/payment_intents/{intent_id}", None, None))

    async def find_intent(self, idempotency_key: str) -> ProviderIntent | None:
        """The sandbox filters its intent list by the key the intent was created with (``?idempotency_key=``).

        Processors without such a filter are searched by metadata instead (every intent carries
        ``payment_id`` and ``kassa_session_id``); either way the answer is the intent or none.
        """
        obj = await self._call("GET", "v1/payment_intents", None, None, params={"idempotency_key": idempotency_key})
        data = obj.get("data") or []
        return _answered_intent(data[0]) if data else None

    async def list_intents(
        self, created_after: int, created_until: int, starting_after: str | None, limit: int
    ) -> tuple[list[ProviderIntent], bool]:
        """A page of intents created within (created_after, created_until], newest first, after ``starting_after``."""
        params = {"limit": str(limit), "created[gt]": str(created_after), "created[lte]": str(created_until)}
        if starting_after:
            params["starting_after"] = starting_after
        obj = await self._call("GET", "v1/payment_intents", None, None, params=params)
        return [_answered_intent(item) for item in obj.get("data") or []], bool(obj.get("has_more"))

    def parse_event(self, payload: bytes, signature: str) -> ProviderEvent:
        try:
            verify(self._secret, payload, signature)
        except SignatureError as exc:
            raise PermissionDenied(f"invalid webhook signature: {exc}") from exc
        try:
            event = json.loads(payload)
            event_id, raw_type = str(event["id"]), str(event["type"])
            obj = (event.get("data") or {}).get("object")
            intent = _intent(obj) if isinstance(obj, dict) and obj.get("object") == "payment_intent" else None
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
            # OverflowError: int(float("inf")) of an amount JSON wrote as Infinity.
            raise InvalidArgument("payload", "not a sandbox event") from exc
        if not event_id:
            raise InvalidArgument("payload", "the event has no id")
        return ProviderEvent(event_id, _EVENTS.get(raw_type, EventKind.OTHER), raw_type, intent)

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        idempotency_key: str | None,
        *,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """``path`` is relative to the provider's base URL (no leading slash)."""
        with tracing.client_span(
            f"{method} /{_ID_SEGMENT.sub('/{id}', path)}",
            {"http.request.method": method, "server.address": self.name, "kassa.provider": self.name},
        ) as span:
            answer = await self._send(method, path, body, idempotency_key, params)
            tracing.http_status(span, answer.status)
        return _read(answer)

    async def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        idempotency_key: str | None,
        params: dict[str, str] | None,
    ) -> _Answer:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        headers.update(tracing.outgoing_metadata())  # the provider may continue the trace (the sandbox does)

        async def post() -> _Answer:
            async with self._client.request(
                method, path, json=body, headers=headers, params=params, allow_redirects=False
            ) as response:
                answer = _Answer(response.status, response.reason or "", await response.read())
            if answer.status >= 500:
                raise _Retryable(answer)
            return answer

        try:
            try:
                # The usual call answers at once: no retry machinery is built for it (~40 µs a call).
                return await post()
            except _RETRYABLE:
                if self._attempts < 2:
                    raise
            # The same schedule as one AsyncRetrying over every post: the first wait, then the later ones.
            await self._sleep(_first_wait())
            async for attempt in AsyncRetrying(
                sleep=self._sleep,
                stop=stop_after_attempt(self._attempts - 1),
                wait=_LATER_WAITS,
                retry=retry_if_exception_type(_RETRYABLE),
                reraise=True,
            ):
                with attempt:
                    answer = await post()
        except _Retryable as exc:
            raise ProviderUnavailable(*_error(exc.answer, _error_object(exc.answer))) from exc
        except TimeoutError as exc:
            # The session's total timeout, or aiohttp's own connect and read timeouts (TimeoutError subclasses).
            raise ProviderUnavailable("timeout", f"the provider did not answer in time ({type(exc).__name__})") from exc
        except aiohttp.ClientError as exc:
            # No connection after the attempts, a connection broken mid-answer, a malformed answer: the outcome is
            # unknown.
            raise ProviderUnavailable("network_error", str(exc) or type(exc).__name__) from exc
        return answer


def _read(answer: _Answer) -> dict[str, Any]:
    """The JSON object of a 2xx or 3xx answer; any other answer raised as a declined or rejected call."""
    if answer.status < 400:
        try:
            result = answer.json()
        except ValueError as exc:
            raise ProviderUnavailable("invalid_response", "the provider's answer is not JSON") from exc
        if not isinstance(result, dict):
            raise ProviderUnavailable("invalid_response", "the provider's answer is not a JSON object")
        return result
    error = _error_object(answer)
    code, message = _error(answer, error)
    intent = _error_intent(error)
    if answer.status == 402:
        raise ProviderDeclined(code, message, intent.intent_id if intent else None)
    raise ProviderRejected(code, message, intent)


def _error(answer: _Answer, error: dict[str, Any]) -> tuple[str, str]:
    """The refusal's code and message, from its ``error`` object (``_error_object``), else from the status."""
    code = str(error.get("decline_code") or error.get("code") or f"http_{answer.status}")
    return code, str(error.get("message") or answer.reason)


def _error_intent(error: dict[str, Any]) -> ProviderIntent | None:
    obj = error.get("payment_intent")
    if not isinstance(obj, dict):
        return None
    try:
        return _intent(obj)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        return None  # the refusal stands; the intent it names is unreadable


def _error_object(answer: _Answer) -> dict[str, Any]:
    """The ``error`` object of a refusal, or an empty one when the answer has none (not JSON, not an object)."""
    try:
        body = answer.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}
