"""ConfirmPromotionUsage and ReleasePromotionUsage: settle a reservation, idempotently."""

from __future__ import annotations

from kernel.errors import FailedPrecondition, Reason
from promotion.biz.ports import Tx, UnitOfWork
from promotion.model.usage import Usage, UsageStatus

__all__ = ["ConfirmPromotionUsage", "ReleasePromotionUsage"]

_GIVEN_BACK = (UsageStatus.RELEASED, UsageStatus.RETURNED)


_EVENTS = {UsageStatus.CONFIRMED: "PromotionUsageConfirmed", UsageStatus.RELEASED: "PromotionUsageReleased"}


async def _move(tx: Tx, reservation_ref: str, to: UsageStatus, *, used: int) -> tuple[list[Usage], list[Usage]]:
    """Under the reference's lock: its uses as they were, and those this call moved from RESERVED to ``to``,
    with the moved uses' counters (reserved -1, ``used`` added) and their one event — one statement after the
    lock (``UsageRepo.settle``)."""
    await tx.usages.lock_reference(reservation_ref)
    return await tx.usages.settle(reservation_ref, UsageStatus.RESERVED, to, used=used, event_type=_EVENTS[to])


def _settled(usages: list[Usage], moved: list[Usage], to: UsageStatus) -> int:
    """How many uses of the reference are now ``to``."""
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
            usages, moved = await _move(tx, reservation_ref, UsageStatus.CONFIRMED, used=1)
            if not moved and usages and all(u.status in _GIVEN_BACK for u in usages):
                raise FailedPrecondition(
                    f"the promotion uses of {reservation_ref} were released or given back",
                    reason=Reason.PROMOTION_INVALID,
                    metadata={"reservation_ref": reservation_ref},
                )
            return _settled(usages, moved, UsageStatus.CONFIRMED)


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
            usages, moved = await _move(tx, reservation_ref, UsageStatus.RELEASED, used=0)
            return _settled(usages, moved, UsageStatus.RELEASED)
