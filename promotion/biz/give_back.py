"""Give an ended order's promotion uses back, on OrderCancelled or OrderPaymentFailed from the order service.

Protects the usage limits' bookkeeping (a cancelled order's use must not keep counting against the
promotion's or the customer's limit) and DESIGN.md §4.5: the counter changes, their events and the
inbox claim commit in one transaction, so a redelivered event has no second effect.

Uses are found by their reservation_ref, the checkout session id. Still RESERVED → RELEASED (as
ReleasePromotionUsage does); CONFIRMED → RETURNED, with used_count decremented (the per-customer count
is the customer's RESERVED and CONFIRMED rows, so it drops with the status). RETURNED is final, so this
happens once. The reference lock serialises it with Confirm/ReleasePromotionUsage of the same session:
a confirm after it is refused, a release after it finds nothing reserved.
"""

from __future__ import annotations

from dataclasses import dataclass

from promotion.biz.ports import UnitOfWork
from promotion.model.usage import Usage, UsageEvent, UsageStatus

__all__ = ["CONSUMER", "ORDER_ENDED_EVENTS", "GiveBackOrderUsage", "GivenBack"]

CONSUMER = "promotion-order-events"
ORDER_ENDED_EVENTS = ("OrderCancelled", "OrderPaymentFailed")


@dataclass(frozen=True, slots=True)
class GivenBack:
    released: tuple[Usage, ...] = ()
    returned: tuple[Usage, ...] = ()
    duplicate: bool = False

    def describe(self) -> str:
        if self.duplicate:
            return "already handled"
        if not self.released and not self.returned:
            return "nothing reserved or used"
        return f"released {len(self.released)} use(s), returned {len(self.returned)} use(s)"


class GiveBackOrderUsage:
    """Release the reserved and return the confirmed uses of ``reservation_ref``, once per event."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, *, event_id: str, reservation_ref: str) -> GivenBack:
        async with self._uow.transaction() as tx:
            await tx.usages.lock_reference(reservation_ref)
            if not await tx.inbox.claim(CONSUMER, event_id):
                return GivenBack(duplicate=True)
            released = await tx.usages.move(reservation_ref, UsageStatus.RESERVED, UsageStatus.RELEASED)
            returned = await tx.usages.move(reservation_ref, UsageStatus.CONFIRMED, UsageStatus.RETURNED)
            # Promotions in code order, the order reserve locks them in, so this never deadlocks with it.
            shifts = [(u, -1, 0) for u in released] + [(u, 0, -1) for u in returned]
            for usage, reserved, used in sorted(shifts, key=lambda s: s[0].code):
                await tx.promotions.shift_counts(usage.promotion_id, reserved=reserved, used=used)
            for event_type, moved in (("PromotionUsageReleased", released), ("PromotionUsageReturned", returned)):
                if moved:
                    event = UsageEvent(event_type, reservation_ref, moved[0].customer_id, tuple(moved))
                    await tx.add_event(event.event_type, event.reservation_ref, event.data())
            return GivenBack(tuple(released), tuple(returned))
