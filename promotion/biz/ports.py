"""What promotion's use cases need from storage, implemented by ``promotion.data``.

The transaction is a port (a unit of work): the reserve, confirm and release use cases decide
what happens inside one database transaction, and the data layer makes it atomic.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from promotion.model.promotion import Promotion
from promotion.model.usage import Usage, UsageEvent, UsageStatus

__all__ = ["PromotionRepo", "PromotionUnitOfWork"]


class PromotionUnitOfWork(Protocol):
    """One open transaction; it commits when the block exits normally and rolls back on an exception."""

    async def lock_reference(self, reservation_ref: str) -> None:
        """Serialize every call for one reservation reference until the transaction ends."""
        ...

    async def usages(self, reservation_ref: str) -> list[Usage]: ...

    async def lock_promotions(self, codes: Sequence[str]) -> dict[str, Promotion]:
        """The promotions with these codes, row-locked in code order (so lockers never deadlock)."""
        ...

    async def customer_uses(
        self, promotion_ids: Sequence[str], customer_id: str, email_key: str | None
    ) -> dict[str, int]:
        """Reserved plus confirmed uses per promotion by this customer: those of ``customer_id`` and those
        recorded with ``email_key`` (when not None), each use counted once."""
        ...

    async def take_uses(self, usages: Sequence[Usage]) -> set[str]:
        """For each usage, reserve one use of its promotion if the usage limit allows it (a conditional
        update) and record the usage (insert it, or revive a released one for the same promotion and
        reference). Returns the promotion ids whose use was taken; the others are exhausted."""
        ...

    async def move_usages(self, reservation_ref: str, src: UsageStatus, dst: UsageStatus) -> list[Usage]:
        """Move the reference's usages in ``src`` to ``dst``; returns the moved ones."""
        ...

    async def shift_counts(self, promotion_id: str, *, reserved: int, used: int) -> None:
        """Add the deltas to the promotion's reserved and used counters."""
        ...

    async def add_event(self, event: UsageEvent) -> None:
        """Record the event in the outbox, committed with the change it describes."""
        ...

    async def claim_event(self, consumer: str, event_id: str) -> bool:
        """Record that ``consumer`` handled ``event_id``, committed with its effect; False if it already had."""
        ...


class PromotionRepo(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[PromotionUnitOfWork]: ...

    async def find_with_customer_uses(
        self, codes: Sequence[str], customer_id: str, email_key: str | None
    ) -> tuple[dict[str, Promotion], dict[str, int]]:
        """The promotions with these codes, and the reserved plus confirmed uses of each by the customer
        (by promotion id; counted as :meth:`PromotionUnitOfWork.customer_uses` does), in one snapshot."""
        ...

    async def create(self, promotion: Promotion) -> Promotion | None:
        """Store a new promotion; None when its code is taken."""
        ...
