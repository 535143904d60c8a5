"""Expires reservations past their TTL, every 5 s; safe with several replicas (SKIP LOCKED).

A reservation past its TTL is refused by ExtendReservations and ConfirmReservations whether or not it was
swept; the sweep gives its units back to stock. With the default TTL of 15 minutes, 5 s (it was 1 s: a
transaction a second on an idle warehouse) returns them a few seconds later at most, well within the 30 s
grace ``kassa check`` allows an expired hold."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import Counter

from infra.worker import every
from warehouse.biz.expire_reservations import ExpireReservations

__all__ = ["RESERVATIONS_EXPIRED", "SWEEP_SECONDS", "Sweeper"]

log = logging.getLogger("kassa.warehouse.sweeper")

SWEEP_SECONDS = 5.0

RESERVATIONS_EXPIRED = Counter(
    "kassa_warehouse_reservations_expired", "Reservations that reached their TTL and gave their units back"
)


class Sweeper:
    def __init__(
        self,
        expire: ExpireReservations,
        *,
        interval_seconds: float = SWEEP_SECONDS,
        batch_size: int = 500,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        """``sleep`` waits between sweeps (a test records the waits instead)."""
        self._expire = expire
        self._sleep = sleep
        self._interval = interval_seconds
        self._batch = batch_size

    async def sweep_once(self) -> int:
        """Expire one batch; returns how many reservations were expired."""
        expired = await self._expire(self._batch)
        if expired:
            RESERVATIONS_EXPIRED.inc(expired)
        return expired

    async def _one_pass(self) -> bool:
        expired = await self.sweep_once()
        if expired:
            log.info("expired %d reservations", expired)
        # A full batch means more are due: sweep again at once.
        return expired >= self._batch

    async def run(self) -> None:
        """Sweep until cancelled."""
        await every("reservation sweep", self._interval, self._one_pass, sleep=self._sleep)()
