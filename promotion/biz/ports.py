"""What promotion's use cases need from storage, implemented by ``promotion.data``.

The transaction is a port (a unit of work): the reserve, confirm and release use cases decide
what happens inside one database transaction, and the data layer makes it atomic.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from promotion.model.promotion import Promotion
from promotion.model.usage import Usage, UsageStatus

__all__ = ["Inbox", "PromotionRepo", "Tx", "UnitOfWork", "UsageRepo"]


class PromotionRepo(Protocol):
    async def lock(self, codes: Sequence[str]) -> dict[str, Promotion]:
        """The promotions with these codes, row-locked in code order (so lockers never deadlock)."""
        ...

    async def shift_counts(self, promotion_id: str, *, reserved: int, used: int) -> None:
        """Add the deltas to the promotion's reserved and used counters."""
        ...

    async def find_with_customer_uses(
        self, codes: Sequence[str], customer_id: str, email_key: str | None
    ) -> tuple[dict[str, Promotion], dict[str, int]]:
        """The promotions with these codes, and the reserved plus confirmed uses of each by the customer
        (by promotion id; counted as :meth:`UsageRepo.customer_uses` does), in one snapshot (one statement)."""
        ...

    async def create(self, promotion: Promotion) -> Promotion | None:
        """Store a new promotion (with the admin's audit entry); None when its code is taken."""
        ...


class UsageRepo(Protocol):
    async def lock_reference(self, reservation_ref: str) -> None:
        """Serialize every call for one reservation reference until the transaction ends."""
        ...

    async def of_reference(self, reservation_ref: str) -> list[Usage]: ...

    async def customer_uses(
        self, promotion_ids: Sequence[str], customer_id: str, email_key: str | None
    ) -> dict[str, int]:
        """Reserved plus confirmed uses per promotion by this customer: those of ``customer_id`` and those
        recorded with ``email_key`` (when not None), each use counted once."""
        ...

    async def take_counting(
        self, usages: Sequence[Usage], promotion_ids: Sequence[str], customer_id: str, email_key: str | None
    ) -> tuple[set[str], dict[str, int]]:
        """For each usage, reserve one use of its promotion if the usage limit allows it (a conditional
        update) and record the usage (insert it, or revive a released one for the same promotion and
        reference); the usages are ``customer_id``'s and ``email_key``'s. In the same statement,
        :meth:`customer_uses` of ``promotion_ids`` as they were before it: one round trip for both. Returns the
        promotion ids whose use was taken (the others are exhausted) and those uses."""
        ...

    async def settle(
        self, reservation_ref: str, src: UsageStatus, dst: UsageStatus, *, used: int, event_type: str
    ) -> tuple[list[Usage], list[Usage]]:
        """In one statement: the reference's usages as they were (in code order), and those in ``src`` moved to
        ``dst`` with their promotions' counters shifted (reserved -1, ``used`` added; promotions locked in code
        order) and, if any moved, one ``event_type`` event (``UsageEvent.data`` of the moved ones)."""
        ...

    async def move(self, reservation_ref: str, src: UsageStatus, dst: UsageStatus) -> list[Usage]:
        """Move the reference's usages in ``src`` to ``dst``; returns the moved ones."""
        ...


class Inbox(Protocol):
    async def claim(self, consumer: str, event_id: str) -> bool:
        """Record that ``consumer`` handled ``event_id``, committed with its effect; False if it already had."""
        ...


class Tx(Protocol):
    """The repositories of one transaction, and its outbox."""

    @property
    def promotions(self) -> PromotionRepo: ...

    @property
    def usages(self) -> UsageRepo: ...

    @property
    def inbox(self) -> Inbox: ...

    async def add_event(self, event_type: str, aggregate_id: str, data: dict[str, Any]) -> None:
        """Record the event in the outbox, committed with the change it describes."""
        ...


class UnitOfWork(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """One open transaction; it commits when the block exits normally and rolls back on an exception."""
        ...

    def read(self) -> AbstractAsyncContextManager[Tx]:
        """For a use case that only reads: each statement commits by itself (no BEGIN/ROLLBACK round trips)."""
        ...
