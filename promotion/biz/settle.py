"""ConfirmPromotionUsage and ReleasePromotionUsage: settle a reservation, idempotently."""

from __future__ import annotations

from infra.errors import FailedPrecondition, Reason
from promotion.biz.ports import PromotionRepo
from promotion.model.usage import UsageEvent, UsageStatus

__all__ = ["confirm_promotion_usage", "release_promotion_usage"]

_GIVEN_BACK = (UsageStatus.RELEASED, UsageStatus.RETURNED)


async def confirm_promotion_usage(repo: PromotionRepo, reservation_ref: str) -> int:
    """Reserved uses become used ones; returns how many uses the reference has confirmed.

    A repeat changes nothing and answers the same (DESIGN.md §4.5: the PromotionUsageConfirmed
    event is written once, in the transaction that moved the counters). Confirming a reservation
    that was already released or given back (its order ended) is refused: its uses went back to the
    pool and may be gone.
    """
    async with repo.transaction() as tx:
        await tx.lock_reference(reservation_ref)
        usages = await tx.usages(reservation_ref)
        moved = await tx.move_usages(reservation_ref, UsageStatus.RESERVED, UsageStatus.CONFIRMED)
        if not moved and usages and all(u.status in _GIVEN_BACK for u in usages):
            raise FailedPrecondition(
                f"the promotion uses of {reservation_ref} were released or given back",
                reason=Reason.PROMOTION_INVALID,
                metadata={"reservation_ref": reservation_ref},
            )
        for usage in sorted(moved, key=lambda u: u.code):
            await tx.shift_counts(usage.promotion_id, reserved=-1, used=1)
        if moved:
            await tx.add_event(
                UsageEvent("PromotionUsageConfirmed", reservation_ref, moved[0].customer_id, tuple(moved))
            )
        already = [u for u in usages if u.status is UsageStatus.CONFIRMED]
        return len(already) + len(moved)


async def release_promotion_usage(repo: PromotionRepo, reservation_ref: str) -> int:
    """Reserved uses go back to the pool; returns how many uses the reference has released.

    Confirmed and returned uses are kept (the order exists, or its end already gave them back); a
    repeat, or an unknown reference, changes nothing (DESIGN.md §4.5: PromotionUsageReleased is
    written once, with the counter change).
    """
    async with repo.transaction() as tx:
        await tx.lock_reference(reservation_ref)
        usages = await tx.usages(reservation_ref)
        moved = await tx.move_usages(reservation_ref, UsageStatus.RESERVED, UsageStatus.RELEASED)
        for usage in sorted(moved, key=lambda u: u.code):
            await tx.shift_counts(usage.promotion_id, reserved=-1, used=0)
        if moved:
            await tx.add_event(
                UsageEvent("PromotionUsageReleased", reservation_ref, moved[0].customer_id, tuple(moved))
            )
        already = [u for u in usages if u.status is UsageStatus.RELEASED]
        return len(already) + len(moved)
