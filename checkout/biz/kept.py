"""A small in-process map of what this process wrote last, bounded in count and in time.

What checkout keeps of its own writes (the carts and sessions it wrote last, the sessions it ended) only serves
the next calls of one checkout flow, seconds apart, and every user of it checks the database when the copy is
missing: so an entry lives for ``ttl_seconds`` at most, at most ``max_entries`` are kept (the one put longest ago
goes first), and a copy never outlives its use by long. Not thread-safe: one event loop uses it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Kept", "KeptWrites"]

K = TypeVar("K")
V = TypeVar("V")


class Kept(Generic[K, V]):
    """Up to ``max_entries`` values, each for ``ttl_seconds`` (or less, per :meth:`put`) after it was put;
    ``max_entries`` 0 keeps nothing. ``clock``: seconds, monotonic."""

    def __init__(
        self, max_entries: int = 1024, ttl_seconds: float = 60.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max = max(0, max_entries)
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def put(self, key: K, value: V, *, ttl_seconds: float | None = None) -> None:
        """Keep ``value`` for ``key`` (replacing what was kept), for ``ttl_seconds`` if shorter than the map's."""
        ttl = self._ttl if ttl_seconds is None else min(ttl_seconds, self._ttl)
        if self._max <= 0 or ttl <= 0:
            self._entries.pop(key, None)
            return
        now = self._clock()
        self._entries[key] = (now + ttl, value)
        self._entries.move_to_end(key)
        while self._entries:  # the oldest first: past their time, or past the count
            oldest = next(iter(self._entries.values()))
            if len(self._entries) <= self._max and oldest[0] > now:
                break
            self._entries.popitem(last=False)

    def get(self, key: K) -> V | None:
        """The value kept for ``key``; None when none is, or its time is up."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            return None
        return entry[1]

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


class KeptWrites(Generic[V]):
    """The copies of what this process wrote last, by id: up to ``max_entries`` of them, of at most ``max_lines``
    lines, each for ``ttl_seconds`` after it was written (0 entries keeps none). The subclass decides what is kept
    (``remember``) and what a caller may be given back (``recall``)."""

    def __init__(
        self,
        max_entries: int = 1024,
        *,
        ttl_seconds: float = 60.0,
        max_lines: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kept: Kept[str, V] = Kept(max_entries, ttl_seconds, clock=clock)
        self._max_lines = max_lines

    def forget(self, key: str) -> None:
        """Drop the copy of ``key``: whatever it is now, it is no longer what was written."""
        self._kept.pop(key)
