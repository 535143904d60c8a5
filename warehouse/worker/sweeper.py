"""Expires reservations past their TTL, about once a second; safe with several replicas (SKIP LOCKED)."""

from __future__ import annotations

import logging

from prometheus_client import Counter

from infra.worker import every
from warehouse.biz.expire_reservations import ExpireReservations

__all__ = ["RESERVATIONS_EXPIRED", "Sweeper"]

log = logging.getLogger("kassa.warehouse.sweeper")

RESERVATIONS_EXPIRED = Counter(
    "kassa_warehouse_reservations_expired", "Reservations that reached their TTL and gave their units back"
)


class Sweeper:
    def __init__(self, expire: ExpireReservations, *, interval_seconds: float = 1.0, batch_size: int = 500) -> None:
        self._expire = expire
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
        await every("reservation sweep", self._interval, self._one_pass)()
