"""The sweeper's step: expire reservations past their TTL and give their units back.

Protects DESIGN.md §4.4 (no reservation outlives its TTL, stock conserved) and §4.5 (the expiry and its
ReservationExpired events commit together). Rows are claimed with SKIP LOCKED, so several replicas
sweep disjoint batches and never wait on a checkout step that holds a row.
"""

from __future__ import annotations

from collections import defaultdict

from warehouse.biz.events import RESERVATION_EXPIRED, reservation_payload
from warehouse.biz.ports import UnitOfWork
from warehouse.model.inventory import Reservation

__all__ = ["ExpireReservations"]


class ExpireReservations:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, limit: int = 500) -> int:
        """Expire one batch of at most ``limit`` reservations; returns how many were expired."""
        async with self._uow.transaction() as tx:
            expired = await tx.expire_due(limit)
            if not expired:
                return 0
            await tx.give_back(expired, sold=False)
            by_ref: dict[str, list[Reservation]] = defaultdict(list)
            for r in expired:
                by_ref[r.reservation_ref].append(r)
            for ref, rows in sorted(by_ref.items()):
                await tx.add_event(RESERVATION_EXPIRED, ref, reservation_payload(ref, rows))
            return len(expired)
