"""ConfirmPromotionUsage and ReleasePromotionUsage: settle a reservation, idempotently."""

from __future__ import annotations

from kernel.errors import FailedPrecondition, Reason
from promotion.biz.ports import Tx, UnitOfWork
from promotion.model.usage import Usage, UsageEvent, UsageStatus

__all__ = ["ConfirmPromotionUsage", "ReleasePromotionUsage"]

_GIVEN_BACK = (UsageStatus.RELEASED, UsageStatus.RETURNED)


async def _record(tx: Tx, event_type: str, reservation_ref: str, moved: list[Usage]) -> None:
    event = UsageEvent(event_type, reservation_ref, moved[0].customer_id, tuple(moved))
    await tx.add_event(event.event_type, event.reservation_ref, event.data())


class ConfirmPromotionUsage:
    """Reserved uses become used ones; returns how many uses the reference has confirmed.

    A repeat changes nothing and answers the same (DESIGN.md §4.5: the PromotionUsageConfirmed
    event is written once, in the transaction that moved the counters). Confirming a reservation
    that was already released or given back (its order ended) is refused: its uses went back to the
    pool and may be gone.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, reservation_ref: str) -> int:
        async with self._uow.transaction() as tx:
            await tx.usages.lock_reference(reservation_ref)
            usages = await tx.usages.of_reference(reservation_ref)
            moved = await tx.usages.move(reservation_ref, UsageStatus.RESERVED, UsageStatus.CONFIRMED)
            if not moved and usages and all(u.status in _GIVEN_BACK for u in usages):
                raise FailedPrecondition(
                    f"the promotion uses of {reservation_ref} were released or given back",
                    reason=Reason.PROMOTION_INVALID,
                    metadata={"reservation_ref": reservation_ref},
                )
            for usage in sorted(moved, key=lambda u: u.code):
                await tx.promotions.shift_counts(usage.promotion_id, reserved=-1, used=1)
            if moved:
                await _record(tx, "PromotionUsageConfirmed", reservation_ref, moved)
            already = [u for u in usages if u.status is UsageStatus.CONFIRMED]
            return len(already) + len(moved)


class ReleasePromotionUsage:
    """Reserved uses go back to the pool; returns how many uses the reference has released.

    Confirmed and returned uses are kept (the order exists, or its end already gave them back); a
    repeat, or an unknown reference, changes nothing (DESIGN.md §4.5: PromotionUsageReleased is
    written once, with the counter change).
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, reservation_ref: str) -> int:
        async with self._uow.transaction() as tx:
            await tx.usages.lock_reference(reservation_ref)
            usages = await tx.usages.of_reference(reservation_ref)
            moved = await tx.usages.move(reservation_ref, UsageStatus.RESERVED, UsageStatus.RELEASED)
            for usage in sorted(moved, key=lambda u: u.code):
                await tx.promotions.shift_counts(usage.promotion_id, reserved=-1, used=0)
            if moved:
                await _record(tx, "PromotionUsageReleased", reservation_ref, moved)
            already = [u for u in usages if u.status is UsageStatus.RELEASED]
            return len(already) + len(moved)
