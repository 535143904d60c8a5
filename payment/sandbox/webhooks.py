"""Signed webhook delivery from the sandbox to the gateway, in the background with bounded retries.

Delivery never blocks an API response: each event is posted by its own task.
The event id stays the same across retries, so the receiver deduplicates a
redelivery; a fresh signature timestamp is made per attempt, as a processor does.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from infra.webhook_signature import SIGNATURE_HEADER, sign

__all__ = ["WebhookSender"]

log = logging.getLogger("kassa.sandbox.webhooks")


class _RetryableStatus(Exception):
    """The receiver answered 5xx or 429: worth another attempt."""


class WebhookSender:
    def __init__(self, url: str, secret: str, client: httpx.AsyncClient, *, attempts: int = 4) -> None:
        self._url = url
        self._secret = secret
        self._client = client
        self._attempts = attempts
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
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _deliver(self, event: dict[str, Any]) -> None:
        body = json.dumps(event, separators=(",", ":")).encode()
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential_jitter(multiplier=0.2, max=3, jitter=0.5),
                retry=retry_if_exception_type((httpx.TransportError, _RetryableStatus)),
                reraise=True,
            ):
                with attempt:
                    await self._post(body)
        except (httpx.HTTPError, _RetryableStatus) as exc:
            log.warning("webhook %s (%s) not delivered: %r", event["id"], event["type"], exc)

    async def _post(self, body: bytes) -> None:
        headers = {"content-type": "application/json", SIGNATURE_HEADER: sign(self._secret, body)}
        response = await self._client.post(self._url, content=body, headers=headers)
        if response.status_code >= 500 or response.status_code == 429:
            raise _RetryableStatus(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            # A 4xx (bad signature, unknown route) will not get better by retrying.
            log.warning("webhook rejected with HTTP %d: %s", response.status_code, response.text[:200])
