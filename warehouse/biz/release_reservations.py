"""ReleaseReservations: give a session's held units back, idempotently."""

from __future__ import annotations

from warehouse.biz.ports import UnitOfWork
from warehouse.biz.reservations import not_found
from warehouse.model.inventory import Reservation, ReservationStatus

__all__ = ["ReleaseReservations"]


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
            released, rows = await tx.transition_listed(
                reservation_ref, ReservationStatus.RELEASED, only_unexpired=False
            )
            if not rows:
                raise not_found(reservation_ref)
            await tx.give_back(released, sold=False)
            return rows
