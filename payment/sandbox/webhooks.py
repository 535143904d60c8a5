"""Signed webhook delivery from the sandbox to the gateway, in the background, retried until acknowledged.

Delivery never blocks an API response: each event is posted by its own task. Like a real
processor, any answer but 2xx (or no answer) is retried, waiting ``backoff``, 2 x, 4 x ... (capped
at ``backoff_max``) in between, for at most ``attempts`` posts; the outcome is reported through
``on_done`` so the ledger knows what is still to deliver after a restart. The event id stays the
same across retries, so the receiver deduplicates a redelivery; a fresh signature timestamp is made
per attempt, as a processor does.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx

from infra.webhook_signature import SIGNATURE_HEADER, sign

__all__ = ["WebhookSender", "backoff_delays"]

log = logging.getLogger("kassa.sandbox.webhooks")


def backoff_delays(attempts: int, backoff: float, backoff_max: float) -> list[float]:
    """The waits between ``attempts`` posts: backoff, 2 x backoff, 4 x ..., each at most backoff_max."""
    return [min(backoff * 2**n, backoff_max) for n in range(max(attempts - 1, 0))]


class WebhookSender:
    def __init__(
        self,
        url: str,
        secret: str,
        client: httpx.AsyncClient,
        *,
        attempts: int = 8,
        backoff_seconds: float = 1.0,
        backoff_max_seconds: float = 60.0,
        on_done: Callable[[str, bool], None] | None = None,
    ) -> None:
        self._url = url
        self._secret = secret
        self._client = client
        self._delays = backoff_delays(attempts, backoff_seconds, backoff_max_seconds)
        self._on_done = on_done or (lambda _id, _ok: None)
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, event: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(event))
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

    async def _deliver(self, event: dict[str, Any]) -> None:
        body = json.dumps(event, separators=(",", ":")).encode()
        for delay in [*self._delays, None]:
            problem = await self._post(body)
            if problem is None:
                self._on_done(event["id"], True)
                return
            if delay is None:
                break
            log.info("webhook %s (%s): %s; retrying in %.1f s", event["id"], event["type"], problem, delay)
            await asyncio.sleep(delay)
        log.warning("webhook %s (%s) not delivered: %s; giving up", event["id"], event["type"], problem)
        self._on_done(event["id"], False)

    async def _post(self, body: bytes) -> str | None:
        """None when the receiver acknowledged (2xx), else why not."""
        headers = {"content-type": "application/json", SIGNATURE_HEADER: sign(self._secret, body)}
        try:
            response = await self._client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code} {response.text[:200]}"
