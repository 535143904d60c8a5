"""Give an ended order's units back, on OrderCancelled or OrderPaymentFailed from the order service.

Protects DESIGN.md §4.4 (no stock leak; stock conserved: initial on_hand = on_hand now + units
confirmed sold, where a RESTOCKED reservation no longer counts as sold) and §4.5 (the effect, its
StockRestocked event and the inbox claim commit together, so a redelivered event has no second effect).

The order's reservations are found by their reservation_ref, the checkout session id. Held (ACTIVE)
units are released as ReleaseReservations does; sold (CONFIRMED) units go back on hand and their rows
become RESTOCKED, a final state, so neither a second delivery nor a later Confirm/Release moves stock
again. The ref lock serialises this with ConfirmReservations and ReleaseReservations of the same
session: whichever runs second sees the other's outcome (a confirm after it is refused, a release after
it finds nothing held).
"""

from __future__ import annotations

from dataclasses import dataclass

from warehouse.biz.events import STOCK_RESTOCKED, reservation_payload
from warehouse.biz.ports import UnitOfWork
from warehouse.model.inventory import Reservation, ReservationStatus

__all__ = ["CONSUMER", "ORDER_ENDED_EVENTS", "ReturnOrderStock", "Returned"]

CONSUMER = "warehouse-order-events"
ORDER_ENDED_EVENTS = ("OrderCancelled", "OrderPaymentFailed")


@dataclass(frozen=True, slots=True)
class Returned:
    """What one event did: the reservations it released and those it restocked."""

    released: tuple[Reservation, ...] = ()
    restocked: tuple[Reservation, ...] = ()
    duplicate: bool = False

    def describe(self) -> str:
        if self.duplicate:
            return "already handled"
        if not self.released and not self.restocked:
            return "nothing held or sold"
        released = sum(r.quantity for r in self.released)
        restocked = sum(r.quantity for r in self.restocked)
        return f"released {released} unit(s), restocked {restocked} unit(s)"


class ReturnOrderStock:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, *, event_id: str, reservation_ref: str, order_id: str = "", cause: str = "") -> Returned:
        """Release the held and restock the sold units of ``reservation_ref``, once per event, in one transaction."""
        async with self._uow.transaction() as tx:
            await tx.lock_ref(reservation_ref)
            if not await tx.claim_event(CONSUMER, event_id):
                return Returned(duplicate=True)
            released = await tx.transition(reservation_ref, ReservationStatus.RELEASED, only_unexpired=False)
            restocked = await tx.transition(
                reservation_ref, ReservationStatus.RESTOCKED, only_unexpired=False, src=ReservationStatus.CONFIRMED
            )
            # Both sets' stock rows in one ordered lock, so this never deadlocks with a reservation.
            await tx.lock_stock_rows([(r.sku, r.warehouse_id) for r in (*released, *restocked)])
            await tx.give_back(released, sold=False)
            await tx.restock(restocked)
            if restocked:
                data = reservation_payload(reservation_ref, restocked)
                data.update(order_id=order_id, cause=cause)
                await tx.add_event(STOCK_RESTOCKED, reservation_ref, data)
            return Returned(tuple(released), tuple(restocked))
