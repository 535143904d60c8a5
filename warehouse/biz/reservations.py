"""What the steps on one ref's reservations share: its current rows, and the SESSION_EXPIRED refusal.

Every step locks the ref first, so steps of one session never interleave, and changes rows with
conditional updates (``status = 'active'``), so a retry is a no-op that returns the current state.
"""

from __future__ import annotations

from kernel.errors import FailedPrecondition, NotFound, Reason
from warehouse.biz.ports import Tx
from warehouse.model.inventory import Reservation, ReservationStatus

__all__ = ["current", "not_found", "session_expired"]


def session_expired(reservation_ref: str, lapsed: list[Reservation]) -> FailedPrecondition:
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


async def current(tx: Tx, reservation_ref: str) -> list[Reservation]:
    rows = await tx.reservations_of(reservation_ref)
    if not rows:
        raise not_found(reservation_ref)
    return rows


def not_found(reservation_ref: str) -> NotFound:
    return NotFound(f"no reservations for {reservation_ref}", metadata={"reservation_ref": reservation_ref})
