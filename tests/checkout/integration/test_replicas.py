"""Checkout's background workers with two replicas at once (``kassa up --replicas 2``), on one real Postgres.

Each replica is a whole checkout ``Container`` of its own (its own engine and connection pool) over the same
database and the same neighbours (fakes that record every call). Both run the session expiry, the DLQ drain
and the saga recovery at the same moment, in small batches so that they contend for the same rows; every
row must be worked on by exactly one of them: one state change and one call to the neighbour per row.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from helpers import unique

from checkout.biz.retry import RetryPolicy
from checkout.bootstrap import Container, build
from checkout.data.tables import checkout_sessions, failed_compensations
from checkout.model.cart import CartStatus
from checkout.model.catalog import Address
from checkout.model.compensation import NewCompensation, Operation
from checkout.model.session import Session, SessionStatus
from infra.config import Settings
from tests.checkout.sessions import begin_confirm, new_session

pytestmark = pytest.mark.integration

ORIGIN = Address("WH", "1 Depot Rd", "", "Reno", "NV", "89501", "US", "")


ROWS = 12  # per test; each pass takes at most BATCH, so the replicas meet on the same rows
BATCH = 3


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def replicas(served: Any, settings: Settings) -> AsyncIterator[tuple[Container, Container]]:
    """The served checkout and a second replica of it: same database and neighbours, its own pool."""
    async with AsyncExitStack() as stack:
        second = await build(settings, stack, served.container.gateways, retry=RetryPolicy(2, 0.001, 0.002))
        yield served.container, second


async def _race(*passes: Callable[[], Awaitable[int]]) -> None:
    """Run every replica's pass at the same moment, again and again, until none finds anything more to do."""
    for _ in range(100):
        done = await asyncio.gather(*(one() for one in passes))
        if not any(done):
            return
    raise AssertionError("the workers never ran out of work")


def _calls(fake: Any, method: str, ref: str) -> int:
    return sum(1 for name, args in list(fake.calls) if name == method and args and args[0] == ref)


async def _sessions(container: Container, count: int, *, minutes: int) -> list[Session]:
    made = []
    for _ in range(count):
        async with container.uow.transaction() as tx:
            session = await new_session(tx, ORIGIN, minutes=minutes)
        made.append(session)
    return made


async def test_two_replicas_expire_each_overdue_session_once(replicas: tuple[Container, Container], served) -> None:
    first, second = replicas
    overdue = await _sessions(first, ROWS, minutes=-1)

    await _race(lambda: first.expiry.run_once(BATCH), lambda: second.expiry.run_once(BATCH))

    for session in overdue:
        async with first.uow.transaction() as tx:
            assert (await tx.sessions.get(session.session_id)).status is SessionStatus.EXPIRED
            assert (await tx.carts.get(session.cart_id)).status is CartStatus.ACTIVE
        # Its stock given back once, by whichever replica expired it.
        assert _calls(served.inventory, "release_reservations", session.session_id) == 1


async def test_two_replicas_drain_each_failed_compensation_once(replicas: tuple[Container, Container], served) -> None:
    first, second = replicas
    refs = [str(uuid.uuid4()) for _ in range(ROWS)]
    ids = []
    async with first.uow.transaction() as tx:
        for ref in refs:
            item = NewCompensation(ref, Operation.RELEASE_RESERVATIONS, {"reservation_ref": ref}, "warehouse down")
            ids.append(await tx.compensations.add(item))
    async with first.engine.begin() as conn:
        await conn.execute(
            failed_compensations.update()
            .where(failed_compensations.c.id.in_(ids))
            .values(next_attempt_at=sa.func.now())
        )

    await _race(lambda: first.drain.run_once(BATCH), lambda: second.drain.run_once(BATCH))

    async with first.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(failed_compensations.c.status, failed_compensations.c.attempts).where(
                    failed_compensations.c.id.in_(ids)
                )
            )
        ).all()
    assert [(r.status, r.attempts) for r in rows] == [("done", 0)] * ROWS
    for ref in refs:
        assert _calls(served.inventory, "release_reservations", ref) == 1


async def test_two_replicas_recover_each_stuck_saga_once(replicas: tuple[Container, Container], served) -> None:
    first, second = replicas
    stuck = await _sessions(first, ROWS, minutes=15)
    async with first.uow.transaction() as tx:
        for session in stuck:
            assert await begin_confirm(tx, session.session_id, unique("key"), "fp") is not None
    ids = [s.session_id for s in stuck]
    async with first.engine.begin() as conn:
        await conn.execute(
            checkout_sessions.update()
            .where(checkout_sessions.c.session_id.in_(ids))
            .values(confirm_started_at=sa.func.now() - sa.text("interval '1 hour'"))
        )

    await _race(lambda: first.recovery.run_once(BATCH), lambda: second.recovery.run_once(BATCH))

    for session in stuck:
        async with first.uow.transaction() as tx:
            recovered = await tx.sessions.get(session.session_id)
        # Claimed once (the live saga was attempt 1, the one recovery attempt 2), and undone once.
        assert recovered.saga_attempt == 2
        assert recovered.status is not SessionStatus.CONFIRMING
        assert _calls(served.inventory, "release_reservations", session.session_id) == 1


async def test_a_claim_of_one_stuck_saga_leases_that_one_and_leaves_the_rest_to_other_replicas(
    replicas: tuple[Container, Container],
) -> None:
    """A lease of n rows takes n rows: before, a claim of one took every stuck session it scanned, and the
    replica worked on one while the others stayed leased to nobody until their lease ran out again."""
    first, _ = replicas
    stuck = await _sessions(first, 4, minutes=15)
    ids = [s.session_id for s in stuck]
    async with first.uow.transaction() as tx:
        for session in stuck:
            await begin_confirm(tx, session.session_id, unique("key"), "fp")
    async with first.engine.begin() as conn:  # the oldest stuck sagas there are
        await conn.execute(
            checkout_sessions.update()
            .where(checkout_sessions.c.session_id.in_(ids))
            .values(confirm_started_at=sa.func.now() - sa.text("interval '10 years'"))
        )
    async with first.uow.transaction() as tx:
        claimed = await tx.sessions.claim_stuck(120, 1)
    assert len(claimed) == 1 and claimed[0].session_id in ids
    async with first.engine.connect() as conn:
        attempts = (
            await conn.execute(
                sa.select(checkout_sessions.c.saga_attempt).where(checkout_sessions.c.session_id.in_(ids))
            )
        ).scalars()
        assert sorted(attempts) == [1, 1, 1, 2]
    # The other three are there for the next claim, of this replica or another.
    async with second_uow(replicas).transaction() as tx:
        assert len(await tx.sessions.claim_stuck(120, 3)) == 3


def second_uow(replicas: tuple[Container, Container]) -> Any:
    return replicas[1].uow
