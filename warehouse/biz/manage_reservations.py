"""Extend, release and confirm the reservations of one ref (a checkout session), each all or nothing.

Every step locks the ref first, so steps of one session never interleave, and changes rows with
conditional updates (``status = 'active'``), so a retry is a no-op that returns the current state.
"""

from __future__ import annotations

from infra.errors import FailedPrecondition, NotFound, Reason
from warehouse.biz.events import RESERVATIONS_CONFIRMED, reservation_payload
from warehouse.biz.ports import Tx, UnitOfWork
from warehouse.model.inventory import Reservation, ReservationStatus

__all__ = ["ConfirmReservations", "ExtendReservations", "GetReservations", "ReleaseReservations"]


def _session_expired(reservation_ref: str, lapsed: list[Reservation]) -> FailedPrecondition:
    """SESSION_EXPIRED naming what lapsed: each sku@warehouse with its state (``past_ttl`` while the
    sweeper has yet to expire it), so a caller can tell an expiry from a release or a restock."""
    states = {f"{r.sku}@{r.warehouse_id}": _state(r) for r in lapsed}
    detail = ", ".join(f"{key} {state}" for key, state in sorted(states.items()))
    return FailedPrecondition(
        f"reservations of {reservation_ref} are no longer active: {detail}",
        reason=Reason.SESSION_EXPIRED,
        metadata={
            "reservation_ref": reservation_ref,
            "lapsed": ",".join(sorted(states)),
            "states": ",".join(sorted(set(states.values()))),
        },
    )


def _state(r: Reservation) -> str:
    return "past_ttl" if r.status is ReservationStatus.ACTIVE else r.status.value


async def _current(tx: Tx, reservation_ref: str) -> list[Reservation]:
    rows = await tx.reservations_of(reservation_ref)
    if not rows:
        raise NotFound(f"no reservations for {reservation_ref}", metadata={"reservation_ref": reservation_ref})
    return rows


class GetReservations:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, reservation_ref: str) -> list[Reservation]:
        """Read-only view of a ref's reservations; an unknown ref has none."""
        async with self._uow.read() as tx:
            return await tx.reservations_of(reservation_ref)


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
            rows = await _current(tx, reservation_ref)
            lapsed = [r for r in rows if r.reservation_id not in extended]
            if lapsed:
                raise _session_expired(reservation_ref, lapsed)
            return rows


class ReleaseReservations:
    """Give a session's held units back to stock; idempotent.

    Protects DESIGN.md §4.4 (stock conserved): only ACTIVE rows are released, and each one returns
    exactly its quantity to ``reserved`` once; released, expired or confirmed rows are left as they are.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, reservation_ref: str) -> list[Reservation]:
        async with self._uow.transaction() as tx:
            await tx.lock_ref(reservation_ref)
            released = await tx.transition(reservation_ref, ReservationStatus.RELEASED, only_unexpired=False)
            await tx.give_back(released, sold=False)
            return await _current(tx, reservation_ref)


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
            confirmed = await tx.transition(reservation_ref, ReservationStatus.CONFIRMED, only_unexpired=True)
            rows = await _current(tx, reservation_ref)
            lapsed = [r for r in rows if r.status is not ReservationStatus.CONFIRMED]
            if lapsed:
                # Rolls back the rows this call moved too: never a partial set confirmed.
                raise _session_expired(reservation_ref, lapsed)
            if confirmed:
                await tx.give_back(confirmed, sold=True)
                await tx.add_event(
                    RESERVATIONS_CONFIRMED, reservation_ref, reservation_payload(reservation_ref, confirmed)
                )
            return rows
