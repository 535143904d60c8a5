"""ConfirmReservations: turn a session's held units into sold ones, all or nothing."""

from __future__ import annotations

from warehouse.biz.events import RESERVATIONS_CONFIRMED, reservation_payload
from warehouse.biz.ports import NewEvent, UnitOfWork
from warehouse.biz.reservations import not_found, session_expired
from warehouse.model.inventory import Reservation, ReservationStatus

__all__ = ["ConfirmReservations"]


class ConfirmReservations:
    """Turn a session's held units into sold units (on_hand and reserved both drop); idempotent.

    Protects DESIGN.md §4.1 and §4.4: units are deducted exactly once (only ACTIVE rows move), and a
    session whose reservations lapsed (released, expired, restocked or past expires_at) is refused with
    SESSION_EXPIRED as a whole rather than selling stock that is no longer held for it. Checkout relies
    on this refusal to never capture money for units the customer no longer holds.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, reservation_ref: str) -> list[Reservation]:
        async with self._uow.transaction() as tx:
            await tx.lock_ref(reservation_ref)
            # The move and the ref's rows as they stand after it, in one statement (after the ref's lock, so the
            # rows are those every earlier step of this ref left).
            confirmed, rows = await tx.transition_listed(
                reservation_ref, ReservationStatus.CONFIRMED, only_unexpired=True
            )
            if not rows:
                raise not_found(reservation_ref)
            lapsed = [r for r in rows if r.status is not ReservationStatus.CONFIRMED]
            if lapsed:
                # Rolls back the rows this call moved too: never a partial set confirmed.
                raise session_expired(reservation_ref, lapsed)
            if confirmed:
                # The sold units leave stock and ReservationsConfirmed is written by one statement.
                payload = reservation_payload(reservation_ref, confirmed)
                event = NewEvent(RESERVATIONS_CONFIRMED, reservation_ref, payload)
                await tx.give_back(confirmed, sold=True, event=event)
            return rows
