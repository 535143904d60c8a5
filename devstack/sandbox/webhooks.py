"""Signed webhook delivery from the sandbox to the gateway, in the background, retried until acknowledged.

Delivery never blocks an API response: each event is posted by its own task. Like a real
processor, any answer but 2xx (or no answer) is retried, waiting ``backoff``, 2 x, 4 x ... (capped
at ``backoff_max``) in between, for at most ``attempts`` posts; the outcome is reported through
``on_done`` so the ledger knows what is still to deliver after a restart. The event id stays the
same across retries, so the receiver deduplicates a redelivery; a fresh signature timestamp is made
per attempt, as a processor does.

Chaos (``KASSA_FAULTS``, see :mod:`infra.faults`), at the point ``sandbox.webhook``, drawn once per
event: ``duplicate`` delivers the event twice at once (same id, as a processor's redelivery would),
``reorder`` holds it back until the next webhook of the same intent has been posted (or
``reorder_seconds`` passed, when none follows), ``delay:<seconds>`` posts it that much later, and
``error`` loses its first post (as if the receiver had not answered), so it goes out on the first retry.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp

from infra import faults
from infra.webhook_signature import SIGNATURE_HEADER, sign

__all__ = ["WEBHOOK_FAULT", "WebhookSender", "backoff_delays"]

log = logging.getLogger("kassa.sandbox.webhooks")

WEBHOOK_FAULT = "sandbox.webhook"


def backoff_delays(attempts: int, backoff: float, backoff_max: float) -> list[float]:
    """The waits between ``attempts`` posts: backoff, 2 x backoff, 4 x ..., each at most backoff_max."""
    return [min(backoff * 2**n, backoff_max) for n in range(max(attempts - 1, 0))]


class WebhookSender:
    def __init__(
        self,
        url: str,
        secret: str,
        client: aiohttp.ClientSession,
        *,
        attempts: int = 8,
        backoff_seconds: float = 1.0,
        backoff_max_seconds: float = 60.0,
        reorder_seconds: float = 2.0,
        on_done: Callable[[str, bool], None] | None = None,
    ) -> None:
        self._url = url
        self._secret = secret
        self._client = client
        self._delays = backoff_delays(attempts, backoff_seconds, backoff_max_seconds)
        self._reorder_seconds = reorder_seconds
        self._on_done = on_done or (lambda _id, _ok: None)
        self._tasks: set[asyncio.Task[None]] = set()
        # Events held back by a reorder fault, by intent: (the event's place in sending order, its release).
        self._held: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self._sent = 0

    def send(self, event: dict[str, Any]) -> None:
        self._sent += 1
        self._spawn(self._deliver(event, self._sent))

    def _spawn(self, delivery: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(delivery)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every event sent so far was delivered or gave up (tests, graceful stop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Stop delivering; what was not acknowledged stays pending in the ledger for the next start."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _deliver(self, event: dict[str, Any], place: int, *, chaos: bool = True) -> None:
        intent_id = _intent_id(event)
        kind = await _webhook_fault() if chaos else None
        if kind == "reorder":
            await self._hold(intent_id, place)
        elif kind == "duplicate":
            self._spawn(self._deliver(event, place, chaos=False))
        body = json.dumps(event, separators=(",", ":")).encode()
        parent = _trace_parent(event)
        first = True
        for delay in [*self._delays, None]:
            problem = "injected fault: first post lost" if first and kind == "error" else await self._post(body, parent)
            if first:
                self._release(intent_id, place)
                first = False
            if problem is None:
                self._on_done(event["id"], True)
                return
            if delay is None:
                break
            log.info("webhook %s (%s): %s; retrying in %.1f s", event["id"], event["type"], problem, delay)
            await asyncio.sleep(delay)
        log.warning("webhook %s (%s) not delivered: %s; giving up", event["id"], event["type"], problem)
        self._on_done(event["id"], False)

    async def _hold(self, intent_id: str, place: int) -> None:
        """Wait until a later webhook of the intent was posted, or reorder_seconds passed."""
        released: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (place, released)
        self._held.setdefault(intent_id, []).append(entry)
        try:
            await asyncio.wait_for(released, self._reorder_seconds)
        except TimeoutError:
            pass
        finally:
            waiting = self._held.get(intent_id, [])
            if entry in waiting:
                waiting.remove(entry)
            if not waiting:
                self._held.pop(intent_id, None)

    def _release(self, intent_id: str, place: int) -> None:
        """Let the intent's events held back before this one go, now that this one was posted."""
        for earlier, released in self._held.get(intent_id, []):
            if earlier < place and not released.done():
                released.set_result(None)

    async def _post(self, body: bytes, parent: str | None = None) -> str | None:
        """None when the receiver acknowledged (2xx), else why not. ``parent``: the intent's ``traceparent``."""
        headers = {"content-type": "application/json", SIGNATURE_HEADER: sign(self._secret, body)}
        if parent:
            headers["traceparent"] = parent
        try:
            async with self._client.post(self._url, data=body, headers=headers) as response:
                # Read whole, so the connection goes back to the pool for the next webhook.
                status, text = response.status, (await response.read())[:200].decode(errors="replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}"
        if 200 <= status < 300:
            return None
        return f"HTTP {status} {text}"


def _intent_id(event: dict[str, Any]) -> str:
    """The intent an event is about (every sandbox event carries it), else the event's own id."""
    obj = (event.get("data") or {}).get("object") or {}
    if obj.get("object") == "payment_intent" and obj.get("id"):
        return str(obj["id"])
    return str(event.get("id", ""))


def _trace_parent(event: dict[str, Any]) -> str | None:
    """The W3C ``traceparent`` of the request that created the event's intent (app.py keeps it in its metadata)."""
    obj = (event.get("data") or {}).get("object") or {}
    parent = (obj.get("metadata") or {}).get("traceparent") if isinstance(obj, dict) else None
    return parent if isinstance(parent, str) else None


async def _webhook_fault() -> str | None:
    """The kind of fault drawn for one webhook (a delay has been slept already), or None."""
    try:
        rule = await faults.ahit(WEBHOOK_FAULT)
    except faults.InjectedFault:
        return "error"
    return None if rule is None else rule.kind
