"""Draining failed_compensations: retry each with exponential backoff and jitter, then park it dead.

Protects DESIGN.md §4.3 and §4.4: a void, release or confirmation that failed during a checkout is
retried (≈1 min → 5 min → 30 min → 2 h) until it succeeds, and otherwise kept, dead, for an operator.
Rows are claimed with FOR UPDATE SKIP LOCKED under a lease, so several replicas can drain together, and
each row's outcome is written only under the lease that claimed it.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

from checkout.biz.checkout.compensations import Compensator
from checkout.biz.ports import UnitOfWork
from checkout.model.compensation import BACKOFF_SCHEDULE_SECONDS, FailedCompensation

__all__ = ["LEASE_SECONDS", "Attempt", "FailedCompensationDrain", "backoff_seconds"]

log = logging.getLogger("kassa.checkout.dlq")

LEASE_SECONDS = 300


def backoff_seconds(attempts: int) -> float | None:
    """Delay before the next retry after ``attempts`` failed retries; None when it is time to give up."""
    if attempts >= len(BACKOFF_SCHEDULE_SECONDS):
        return None
    return BACKOFF_SCHEDULE_SECONDS[attempts] * random.uniform(0.8, 1.2)


@dataclass(frozen=True, slots=True)
class Attempt:
    """How one run of a compensation ended."""

    succeeded: bool
    error: str = ""


class FailedCompensationDrain:
    def __init__(self, uow: UnitOfWork, compensator: Compensator) -> None:
        self._uow = uow
        self._compensator = compensator

    async def run_once(self, limit: int = 50) -> int:
        """Retry due rows once each; returns how many succeeded.

        The rows are leased for LEASE_SECONDS. No row is started past half of it (the rest lapse and come
        back, to this replica or another), and a row's outcome is written only while the lease still holds
        it: a drain that stalled can't mark dead, or retry later, what another has since done.
        """
        claimed_at = time.monotonic()
        async with self._uow.transaction() as tx:
            due = await tx.compensations.claim_due(limit, LEASE_SECONDS)
        succeeded = 0
        for item in due:
            if time.monotonic() - claimed_at > LEASE_SECONDS / 2:
                break
            if (await self.run(item)).succeeded:
                succeeded += 1
        return succeeded

    async def run(self, item: FailedCompensation) -> Attempt:
        """Run one claimed row and write its outcome under the claim's lease: done, or rescheduled with the
        next backoff step, or dead after the last. The drain and an operator's retry or replay both come here."""
        try:
            await self._compensator.run(item.operation, item.payload)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:1000]
            delay = backoff_seconds(item.attempts + 1)
            async with self._uow.transaction() as tx:
                if delay is None:
                    if await tx.compensations.mark_dead(item, error):
                        log.error("%s for session %s is dead after %d retries: %s",
                                  item.operation, item.session_id, item.attempts + 1, error)  # fmt: skip
                else:
                    await tx.compensations.reschedule(item, delay, error)
            return Attempt(False, error)
        async with self._uow.transaction() as tx:
            await tx.compensations.mark_done(item)
        return Attempt(True)
