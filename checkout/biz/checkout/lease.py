"""Who drives a session's saga: a lease on the session row, fenced by its ``saga_attempt``.

Protects DESIGN.md §4.2/§4.3 against two drivers of one saga — a live ConfirmCheckout that stalled
(a pause, a slow neighbour) and the recovery worker that took it for dead, or two completions of an
asynchronous payment. Every claim of a session's saga (ConfirmCheckout's guard, recovery's claim of a
stuck session, a payment completion's claim) increments ``saga_attempt`` and returns it; every write
the saga makes afterwards is conditional on that attempt, and one that matches no row means another
owner claimed the session: :class:`LeaseLost`, upon which the saga stops at once, compensating
nothing (the new owner decides).

The lease runs ``recovery_after_seconds`` from the last such write (the session's
``confirm_started_at``, which recovery compares with the database's clock). Writes fence what they
write, but the calls between them go to other services, which don't know the attempt; so before each
step the holder checks that its lease outlasts the step's longest run (every retry at the RPC
deadline), renewing it by a fenced write when it doesn't. A saga never starts a call it might still be
making when someone else may claim the session.
"""

from __future__ import annotations

import time
from types import TracebackType

from checkout.biz.checkout.steps import step_points
from checkout.biz.policy import CheckoutPolicy
from checkout.biz.ports import UnitOfWork
from checkout.model.session import SagaState, SagaStep, Session
from infra import faults

__all__ = ["Lease", "LeaseLost", "Leases"]


class LeaseLost(Exception):
    """Another owner claimed this session's saga: stop here, touch nothing more, undo nothing."""

    def __init__(self, session_id: str, attempt: int) -> None:
        super().__init__(f"session {session_id}: attempt {attempt} of its saga no longer owns it")
        self.session_id = session_id


class Lease:
    """This process's hold on one session's saga: the attempt every write is fenced by, and (by this
    process's clock, started before the write that took or renewed it) how long it lasts."""

    __slots__ = ("_budget", "_seconds", "_since", "_uow", "attempt", "session_id")

    def __init__(self, uow: UnitOfWork, session: Session, *, seconds: float, budget: float, since: float) -> None:
        self._uow = uow
        self.session_id = session.session_id
        self.attempt = session.saga_attempt
        self._seconds = seconds
        self._budget = budget
        self._since = since

    def lost(self) -> LeaseLost:
        return LeaseLost(self.session_id, self.attempt)

    async def progress(self, saga_step: SagaStep, state: SagaState) -> None:
        """Persist the saga's progress (renewing the lease); raises LeaseLost when another owner has it."""
        since = time.monotonic()
        async with self._uow.single() as tx:
            kept = await tx.sessions.save_progress(self.session_id, saga_step, state, attempt=self.attempt)
        if not kept:
            raise self.lost()
        self._since = since

    async def keep(self) -> None:
        """Make sure the lease outlasts the next step (a call and its retries); renew it if not."""
        if time.monotonic() - self._since + self._budget < self._seconds:
            return
        since = time.monotonic()
        async with self._uow.single() as tx:
            renewed = await tx.sessions.renew(self.session_id, attempt=self.attempt)
        if not renewed:
            raise self.lost()
        self._since = since

    def step(self, name: str) -> _Step:
        """``async with lease.step("capture"):`` — the step between its fault points, under this lease."""
        return _Step(self, name)


class _Step:
    __slots__ = ("_after", "_before", "_lease")

    def __init__(self, lease: Lease, name: str) -> None:
        self._lease = lease
        self._before, self._after = step_points(name)

    async def __aenter__(self) -> None:
        await faults.ahit(self._before)  # a stall injected here is a stall right before the step's call
        await self._lease.keep()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            await faults.ahit(self._after)


class Leases:
    """Turns a claimed session into a :class:`Lease` with the policy's length and step budget."""

    def __init__(self, uow: UnitOfWork, policy: CheckoutPolicy) -> None:
        self._uow = uow
        self._seconds = policy.recovery_after_seconds
        self._budget = policy.step_budget_seconds

    @staticmethod
    def now() -> float:
        """Taken before the claim's transaction: the lease is counted from no later than the database's."""
        return time.monotonic()

    def hold(self, session: Session, since: float) -> Lease:
        return Lease(self._uow, session, seconds=self._seconds, budget=self._budget, since=since)
