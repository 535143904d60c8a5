"""An operator's tools on checkout (CheckoutAdminService): the DLQ, stuck sessions and the funnel.

Protects DESIGN.md §4.3 and §4.4 by adding no new way to change money or stock: a retry or replay runs the
entry through :meth:`FailedCompensationDrain.run`, the worker's own path, under a lease taken the way the
drain's claim takes it (so the worker and an operator never both write an entry's outcome), and the
compensations themselves are idempotent (a void or release run twice changes nothing the second time). A
stuck session is resolved by :meth:`SagaRecovery.recover_one`, the recovery worker's own claim and recovery.
Parking stops the drain from picking the entry (it only claims PENDING rows). Every transition is a
conditional UPDATE on the entry's status: an illegal one changes nothing and is refused with the status the
entry is in.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from checkout.biz.checkout.dlq import LEASE_SECONDS, Attempt, FailedCompensationDrain
from checkout.biz.checkout.recovery import SagaRecovery
from checkout.biz.policy import CheckoutPolicy
from checkout.biz.ports import UnitOfWork
from checkout.model.compensation import CompensationFilter, CompensationStatus, FailedCompensation
from checkout.model.funnel import Funnel
from checkout.model.session import Session, SessionStatus
from kernel.errors import FailedPrecondition, NotFound, Reason
from kernel.paging import decode_keyset_token, keyset_token
from kernel.validation import check_window

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "DeadLetters",
    "FunnelReport",
    "Resolution",
    "StuckSessions",
    "decode_page_token",
    "page_token",
]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_token(entry: FailedCompensation) -> str:
    assert entry.created_at is not None
    return keyset_token(entry.created_at, entry.id)


def _entry_id(value: object) -> str:
    if type(value) is not str:
        raise ValueError("not a DLQ entry id")
    return str(uuid.UUID(value))


def decode_page_token(token: str) -> tuple[datetime, str]:
    return decode_keyset_token(token, _entry_id)


def _conflict(entry: FailedCompensation, action: str, hint: str) -> FailedPrecondition:
    if entry.status == CompensationStatus.PENDING and entry.next_attempt_at is not None:
        # The guard failed on a PENDING entry only because it is being run now (the drain's lease or another
        # operator's): a second run beside it, or a park that would not stop it, is refused.
        hint = f" while it is being run (its lease ends at {entry.next_attempt_at:%Y-%m-%d %H:%M:%S %Z}; try then)"
    return FailedPrecondition(
        f"cannot {action} a {entry.status.upper()} entry{hint}",
        reason=Reason.COMPENSATION_STATE_CONFLICT,
        metadata={"id": entry.id, "status": entry.status},
    )


class DeadLetters:
    def __init__(self, uow: UnitOfWork, drain: FailedCompensationDrain) -> None:
        self._uow = uow
        self._drain = drain

    async def list(self, where: CompensationFilter, page_size: int) -> tuple[list[FailedCompensation], str]:
        async with self._uow.read() as tx:
            found = await tx.compensations.list(where, page_size + 1)
        if len(found) <= page_size:
            return found, ""
        page = found[:page_size]
        return page, page_token(page[-1])

    async def get(self, compensation_id: str) -> FailedCompensation:
        async with self._uow.read() as tx:
            entry = await tx.compensations.get(compensation_id)
        if entry is None:
            raise NotFound(f"no DLQ entry {compensation_id}", metadata={"id": compensation_id})
        return entry

    async def retry(self, compensation_id: str) -> tuple[FailedCompensation, Attempt]:
        """Run a PENDING entry now (whatever its next attempt time)."""
        return await self._run(compensation_id, {CompensationStatus.PENDING}, "retry", " (replay it instead)")

    async def replay(self, compensation_id: str) -> tuple[FailedCompensation, Attempt]:
        """Run a PARKED or DEAD entry once, now; back under automatic retries (attempts from 0) if it fails."""
        statuses = {CompensationStatus.PARKED, CompensationStatus.DEAD}
        return await self._run(compensation_id, statuses, "replay", " (only PARKED and DEAD entries replay)")

    async def park(self, compensation_id: str) -> FailedCompensation:
        async with self._uow.transaction() as tx:
            parked = await tx.compensations.park(compensation_id, LEASE_SECONDS)
        if parked is not None:
            return parked
        entry = await self.get(compensation_id)
        if entry.status == CompensationStatus.PARKED:
            return entry  # parked already: nothing to do
        raise _conflict(entry, "park", " (only PENDING entries park)")

    async def _run(
        self, compensation_id: str, statuses: set[CompensationStatus], action: str, hint: str
    ) -> tuple[FailedCompensation, Attempt]:
        async with self._uow.transaction() as tx:
            taken = await tx.compensations.take(compensation_id, statuses, LEASE_SECONDS, restart=action == "replay")
        if taken is None:
            raise _conflict(await self.get(compensation_id), action, hint)
        attempt = await self._drain.run(taken)
        return await self.get(compensation_id), attempt


@dataclass(frozen=True, slots=True)
class Resolution:
    """What resolving a stuck session did: ``outcome`` completed, awaiting_payment, cancelled or retry_later."""

    session: Session
    outcome: str


_OUTCOMES = {
    SessionStatus.COMPLETED: "completed",
    SessionStatus.AWAITING_PAYMENT: "awaiting_payment",
    SessionStatus.CANCELLED: "cancelled",
    SessionStatus.CONFIRMING: "retry_later",
}


class StuckSessions:
    def __init__(self, uow: UnitOfWork, recovery: SagaRecovery, policy: CheckoutPolicy) -> None:
        self._uow = uow
        self._recovery = recovery
        self.lease_seconds = policy.recovery_after_seconds
        # How long a resolve waits for a recovery someone else started on the session to end.
        self.wait_seconds = min(policy.step_budget_seconds, 10.0)

    async def list(self, limit: int) -> list[Session]:
        async with self._uow.read() as tx:
            return await tx.sessions.list_stuck(self.lease_seconds, limit)

    async def resolve(self, session_id: str) -> Resolution:
        """Drive it forward or compensate it now, through the recovery worker's own claim and recovery."""
        async with self._uow.read() as tx:
            before = await tx.sessions.get(session_id)
        if before is None:
            raise NotFound(f"no checkout session {session_id}", metadata={"session_id": session_id})
        if not await self._recovery.recover_one(session_id):
            now = await self._get(session_id)
            if now.saga_attempt == before.saga_attempt:  # never claimed: it wasn't stuck
                raise FailedPrecondition(
                    f"session {session_id} is {now.status.value}, not stuck mid-confirm past its "
                    f"{self.lease_seconds:g} s lease",
                    reason=Reason.SESSION_NOT_STUCK,
                    metadata={"session_id": session_id, "status": now.status.value},
                )
            # The recovery worker claimed it first (or ours stopped short): say how it ends, if it ends soon.
            deadline = time.monotonic() + self.wait_seconds
            while now.status is SessionStatus.CONFIRMING and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                now = await self._get(session_id)
            return Resolution(now, _OUTCOMES.get(now.status, "retry_later"))
        after = await self._get(session_id)
        return Resolution(after, _OUTCOMES.get(after.status, after.status.value.lower()))

    async def _get(self, session_id: str) -> Session:
        async with self._uow.read() as tx:
            found = await tx.sessions.get(session_id)
        assert found is not None  # sessions are never deleted
        return found


class FunnelReport:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def window(self, start: datetime | None, end: datetime | None) -> Funnel:
        start, end = check_window(start, end)
        async with self._uow.read() as tx:
            return await tx.funnel.funnel(start, end)
