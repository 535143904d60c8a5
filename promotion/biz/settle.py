"""ConfirmPromotionUsage and ReleasePromotionUsage: settle a reservation, idempotently."""

from __future__ import annotations

from kernel.errors import FailedPrecondition, Reason
from promotion.biz.ports import Tx, UnitOfWork
from promotion.model.usage import Usage, UsageEvent, UsageStatus

__all__ = ["ConfirmPromotionUsage", "ReleasePromotionUsage"]

_GIVEN_BACK = (UsageStatus.RELEASED, UsageStatus.RETURNED)


_EVENTS = {UsageStatus.CONFIRMED: "PromotionUsageConfirmed", UsageStatus.RELEASED: "PromotionUsageReleased"}


async def _move(tx: Tx, reservation_ref: str, to: UsageStatus) -> tuple[list[Usage], list[Usage]]:
    """Under the reference's lock: its uses as they were, and those this call moved from RESERVED to ``to``."""
    await tx.usages.lock_reference(reservation_ref)
    usages = await tx.usages.of_reference(reservation_ref)
    moved = await tx.usages.move(reservation_ref, UsageStatus.RESERVED, to)
    return usages, moved


async def _settle(
    tx: Tx, reservation_ref: str, usages: list[Usage], moved: list[Usage], to: UsageStatus, *, used: int
) -> int:
    """The counters of the moved uses (reserved -1, ``used`` added) and their one event; how many uses of the
    reference are now ``to``."""
    for usage in sorted(moved, key=lambda u: u.code):
        await tx.promotions.shift_counts(usage.promotion_id, reserved=-1, used=used)
    if moved:
        event = UsageEvent(_EVENTS[to], reservation_ref, moved[0].customer_id, tuple(moved))
        await tx.add_event(event.event_type, event.reservation_ref, event.data())
    already = [u for u in usages if u.status is to]
    return len(already) + len(moved)


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
            usages, moved = await _move(tx, reservation_ref, UsageStatus.CONFIRMED)
            if not moved and usages and all(u.status in _GIVEN_BACK for u in usages):
                raise FailedPrecondition(
                    f"the promotion uses of {reservation_ref} were released or given back",
                    reason=Reason.PROMOTION_INVALID,
                    metadata={"reservation_ref": reservation_ref},
                )
            return await _settle(tx, reservation_ref, usages, moved, UsageStatus.CONFIRMED, used=1)


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
            usages, moved = await _move(tx, reservation_ref, UsageStatus.RELEASED)
            return await _settle(tx, reservation_ref, usages, moved, UsageStatus.RELEASED, used=0)
