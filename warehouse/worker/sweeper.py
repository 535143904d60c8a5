"""Expires reservations past their TTL, about once a second; safe with several replicas (SKIP LOCKED)."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Counter

from warehouse.biz.expire_reservations import expire_due_reservations
from warehouse.biz.ports import InventoryStore

__all__ = ["RESERVATIONS_EXPIRED", "Sweeper"]

log = logging.getLogger("kassa.warehouse.sweeper")

RESERVATIONS_EXPIRED = Counter(
    "kassa_warehouse_reservations_expired", "Reservations that reached their TTL and gave their units back"
)


class Sweeper:
    def __init__(self, store: InventoryStore, *, interval_seconds: float = 1.0, batch_size: int = 500) -> None:
        self._store = store
        self._interval = interval_seconds
        self._batch = batch_size

    async def sweep_once(self) -> int:
        """Expire one batch; returns how many reservations were expired."""
        expired = await expire_due_reservations(self._store, self._batch)
        if expired:
            RESERVATIONS_EXPIRED.inc(expired)
        return expired

    async def run(self) -> None:
        """Sweep until cancelled; a full batch means more are due, so sweep again at once."""
        while True:
            try:
                expired = await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reservation sweep failed")
                expired = 0
            if expired:
                log.info("expired %d reservations", expired)
            if expired < self._batch:
                await asyncio.sleep(self._interval)
