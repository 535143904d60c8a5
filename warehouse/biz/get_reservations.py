"""BatchGetReservations: the read-only view of one ref's reservations."""

from __future__ import annotations

from warehouse.biz.ports import UnitOfWork
from warehouse.model.inventory import Reservation

__all__ = ["GetReservations"]


class GetReservations:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, reservation_ref: str) -> list[Reservation]:
        """Read-only view of a ref's reservations; an unknown ref has none."""
        async with self._uow.read() as tx:
            return await tx.reservations_of(reservation_ref)
