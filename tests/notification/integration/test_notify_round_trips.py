"""Round trips of one notice (issue 11): the seen check, the claim and the settling are one autocommit statement
each, and the settling statements write the inbox row with the message's outcome or not at all. Real Postgres;
the order service, renderer and channel are fakes (GetOrder's cost is order's own)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from helpers import RoundTrips, Trips
from notification_support import confirmation
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.config import Settings
from infra.db import create_engine
from notification.biz.notify import Notify, SendLater, bury, claim_message
from notification.biz.ports import DeliveryFailed, NewMessage
from notification.data.repositories import SqlUnitOfWork
from notification.data.tables import dead_letters, inbox, messages
from notification.model.message import MessageStatus, message_id_for
from tests.notification.fakes import FakeOrders, FakeRenderer, FakeSender

pytestmark = pytest.mark.integration

CONSUMER = "notification-orders"


@pytest_asyncio.fixture(loop_scope="session")
async def counted(settings: Settings) -> AsyncIterator[tuple[SqlUnitOfWork, RoundTrips, AsyncEngine]]:
    engine = create_engine(str(settings.database_url), pool_size=2, application_name="kassa-notify-round-trips")
    yield SqlUnitOfWork(engine, settings.pii_cipher()), RoundTrips(engine), engine
    await engine.dispose()


async def _rows(engine: AsyncEngine, stmt: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(stmt)).all())


async def _inbox_rows(engine: AsyncEngine, event_id: str) -> int:
    return len(await _rows(engine, sa.select(inbox).where(inbox.c.event_id == event_id)))


async def test_a_sent_notice_is_three_autocommit_statements(
    counted: tuple[SqlUnitOfWork, RoundTrips, AsyncEngine],
) -> None:
    uow, trips, engine = counted
    sender = FakeSender()
    notify = Notify(uow, FakeOrders(), FakeRenderer(), sender)
    notice = confirmation(f"o-{uuid.uuid4().hex[:8]}")
    trips.take()

    assert await notify(notice) == "confirmation sent"
    # Seen? (a read), the claim (one insert), SENT with the inbox row (one statement): was 1 + 1 and 2 in
    # transactions of their own (8 round trips), now 3.
    assert trips.take() == Trips(statements=3, autocommit=3)
    assert len(sender.sent) == 1
    status = await _rows(engine, sa.select(messages.c.status).where(messages.c.event_id == notice.event_id))
    assert [r.status for r in status] == [MessageStatus.SENT.value]
    assert await _inbox_rows(engine, notice.event_id) == 1

    trips.take()
    assert await notify(notice) == "duplicate"  # the inbox row: nothing sent again
    assert trips.take() == Trips(statements=1, autocommit=1)
    assert len(sender.sent) == 1


async def test_a_refused_send_is_buried_with_its_inbox_row_in_one_statement(
    counted: tuple[SqlUnitOfWork, RoundTrips, AsyncEngine],
) -> None:
    uow, trips, engine = counted
    sender = FakeSender(failures=[DeliveryFailed("550 no such mailbox", permanent=True)])
    notify = Notify(uow, FakeOrders(), FakeRenderer(), sender)
    notice = confirmation(f"o-{uuid.uuid4().hex[:8]}")
    trips.take()

    assert await notify(notice) == "dead letter"
    # Seen?, the claim, then DEAD + dead letter + inbox row in one statement.
    assert trips.take() == Trips(statements=3, autocommit=3)
    message_id = message_id_for(notice, "notification.kassa")
    dead = await _rows(engine, sa.select(dead_letters).where(dead_letters.c.message_id == message_id))
    assert [(r.attempts, r.error) for r in dead] == [(1, "550 no such mailbox")]
    assert await _inbox_rows(engine, notice.event_id) == 1


async def test_another_senders_claim_is_not_buried_and_no_inbox_row_is_written(
    counted: tuple[SqlUnitOfWork, RoundTrips, AsyncEngine],
) -> None:
    """The merged bury refuses what the two statements refused: a message another sender holds stays SENDING, with
    no dead letter and no inbox row (so the event comes back)."""
    uow, _, engine = counted
    notice = confirmation(f"o-{uuid.uuid4().hex[:8]}")
    message_id = message_id_for(notice, "notification.kassa")
    holder = uuid.uuid4().hex
    claim = await claim_message(uow, NewMessage(message_id, notice, "email", "ada@example.com", "s"), holder, 60.0)
    assert claim.held and claim.fresh

    assert not await bury(uow, message_id, uuid.uuid4().hex, "nope", consumer=CONSUMER, event_id=notice.event_id)
    status = await _rows(engine, sa.select(messages.c.status).where(messages.c.message_id == message_id))
    assert [r.status for r in status] == [MessageStatus.SENDING.value]
    assert await _rows(engine, sa.select(dead_letters).where(dead_letters.c.message_id == message_id)) == []
    assert await _inbox_rows(engine, notice.event_id) == 0
    # A second sender's claim of the same notice is refused while the lease runs.
    with pytest.raises(SendLater):
        await Notify(uow, FakeOrders(), FakeRenderer(), FakeSender())(notice)
    assert await _inbox_rows(engine, notice.event_id) == 0
    # The holder buries it; a repeat of the bury is refused (it is DEAD) and writes nothing twice.
    assert await bury(uow, message_id, holder, "gave up", consumer=CONSUMER, event_id=notice.event_id)
    assert not await bury(uow, message_id, holder, "gave up", consumer=CONSUMER, event_id=notice.event_id)
    assert len(await _rows(engine, sa.select(dead_letters).where(dead_letters.c.message_id == message_id))) == 1
    assert await _inbox_rows(engine, notice.event_id) == 1
