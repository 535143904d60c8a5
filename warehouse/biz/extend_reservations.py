"""ExtendReservations: keep a session's stock held longer, all or nothing."""

from __future__ import annotations

from warehouse.biz.ports import UnitOfWork
from warehouse.biz.reservations import current, session_expired
from warehouse.model.inventory import Reservation

__all__ = ["ExtendReservations"]


class ExtendReservations:
    """Keep a session's stock held for ``ttl_seconds`` more, or refuse as a whole.

    Protects DESIGN.md §4.4 (no reservation outlives its TTL): a reservation already expired, released
    or past expires_at is never revived, since its units may already be held by someone else.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, reservation_ref: str, ttl_seconds: int) -> list[Reservation]:
        async with self._uow.transaction() as tx:
            await tx.lock_ref(reservation_ref)
            extended = {r.reservation_id for r in await tx.extend(reservation_ref, ttl_seconds)}
            rows = await current(tx, reservation_ref)
            lapsed = [r for r in rows if r.reservation_id not in extended]
            if lapsed:
                raise session_expired(reservation_ref, lapsed)
            return rows
