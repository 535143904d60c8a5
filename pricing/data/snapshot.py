"""An in-process copy of a small reference table, reloaded after a short TTL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["TtlSnapshot"]

T = TypeVar("T")


class TtlSnapshot(Generic[T]):
    """The value ``load()`` returned, reused for ``ttl_seconds``; ``ttl_seconds <= 0`` disables reuse.

    Meant for reference data only (tax and shipping rates), never for anything that moves money or
    stock on its own. Concurrent callers that find the copy expired share a single reload instead of
    each querying the database. A failed reload raises to its caller and keeps nothing, so the next
    call tries again.
    """

    def __init__(
        self, load: Callable[[], Awaitable[T]], ttl_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._load = load
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = asyncio.Lock()
        self._value: T | None = None
        self._expires = float("-inf")

    async def get(self) -> T:
        if self._ttl <= 0:
            return await self._load()
        if self._value is not None and self._clock() < self._expires:
            return self._value
        async with self._lock:
            # Another caller may have reloaded while this one waited for the lock.
            if self._value is None or self._clock() >= self._expires:
                # The TTL counts from before the query, so no copy is ever used past ttl after it was read.
                started = self._clock()
                self._value = await self._load()
                self._expires = started + self._ttl
            return self._value
