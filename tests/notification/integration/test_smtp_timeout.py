"""An SMTP server that goes quiet after DATA may have accepted the message: it is not sent again at once but
comes back with the use case's backoff, with the same Message-ID. A real aiosmtpd server that never answers
the end of DATA (within the sender's timeout); Postgres and the order service for the use case."""

from __future__ import annotations

import asyncio
import email
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from aiosmtpd.smtp import SMTP
from notification_support import confirmation, placed_order, replica

from devstack.localstack import free_port
from infra.config import Settings
from infra.server import Server
from kassa.order.v1.order_service_pb2_grpc import OrderServiceStub
from notification.adapter.smtp_sender import SmtpEmailSender, SmtpSettings
from notification.biz.notify import NotifyPolicy, SendLater
from notification.biz.ports import DeliveryFailed
from notification.data.tables import messages
from notification.model.message import OutgoingMessage

pytestmark = pytest.mark.integration


@dataclass
class QuietAfterData:
    """Takes the envelope, then never answers the end of DATA until the test ends."""

    message_ids: list[str] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.original_content or envelope.content)
        self.message_ids.append(str(parsed["Message-ID"]).strip())
        await self.release.wait()
        return "250 OK"


@pytest_asyncio.fixture(loop_scope="session")
async def quiet_server() -> AsyncIterator[tuple[str, QuietAfterData]]:
    handler = QuietAfterData()
    port = free_port()
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(handler), "127.0.0.1", port)
    try:
        yield f"smtp://127.0.0.1:{port}", handler
    finally:
        handler.release.set()
        server.close()


def sender(url: str) -> SmtpEmailSender:
    return SmtpEmailSender(SmtpSettings.from_url(url), "Kassa <orders@kassa.localhost>", timeout_seconds=0.5)


async def test_a_timeout_after_data_is_not_resent_at_once(quiet_server: tuple[str, QuietAfterData]) -> None:
    url, server = quiet_server
    message = OutgoingMessage(f"<{uuid.uuid4()}.confirmation@notification.kassa>", "ada@example.com", "s", "t", "<p/>")
    with pytest.raises(DeliveryFailed) as failed:
        await sender(url).send(message)
    assert not failed.value.permanent
    assert "after DATA" in str(failed.value)
    # Handed over once: the sender did not retry a message the server may already hold.
    assert server.message_ids == [message.message_id]


async def test_the_use_case_backs_off_and_resends_with_the_same_message_id(
    quiet_server: tuple[str, QuietAfterData],
    orders: OrderServiceStub,
    order_server: Server,
    service_token: str,
    settings: Settings,
) -> None:
    url, server = quiet_server
    order = await placed_order(orders, service_token, f"ada-{uuid.uuid4().hex[:8]}@example.com")
    notice = confirmation(order.order_id)
    async with replica(settings, order_server.port, url, NotifyPolicy(), sender(url)) as r:
        with pytest.raises(SendLater) as later:
            await r.notify(notice)
        assert later.value.delay_seconds == NotifyPolicy().delay(1)
        with pytest.raises(SendLater) as later:
            await r.notify(notice)
        assert later.value.delay_seconds == NotifyPolicy().delay(2)
        async with r.engine.connect() as conn:
            row = (await conn.execute(sa.select(messages).where(messages.c.event_id == notice.event_id))).one()
    assert (row.status, row.attempts) == ("SENDING", 2) and "after DATA" in row.last_error
    assert len(server.message_ids) == 2 and len(set(server.message_ids)) == 1


async def test_sends_cut_off_by_the_handler_timeout_count_toward_the_dead_letters(
    quiet_server: tuple[str, QuietAfterData],
    orders: OrderServiceStub,
    order_server: Server,
    service_token: str,
    settings: Settings,
) -> None:
    url, server = quiet_server
    order = await placed_order(orders, service_token, f"ada-{uuid.uuid4().hex[:8]}@example.com")
    notice = confirmation(order.order_id)
    # The SMTP timeout is longer than the handler's, as in production (10 s within a 40 s handler, retried).
    slow = SmtpEmailSender(SmtpSettings.from_url(url), "Kassa <orders@kassa.localhost>", timeout_seconds=30.0)
    policy = NotifyPolicy(max_attempts=2)
    async with replica(settings, order_server.port, url, policy, slow) as r:

        async def row() -> Any:
            async with r.engine.connect() as conn:
                return (await conn.execute(sa.select(messages).where(messages.c.event_id == notice.event_id))).one()

        for attempt in (1, 2):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):  # what infra.consumer does to a handler that runs too long
                    await r.notify(notice)
            assert (await row()).attempts == attempt
        # Both sends were cut off: the next delivery buries it without trying again.
        assert await r.notify(notice) == "dead letter"
        dead = await row()
        assert dead.status == "DEAD" and dead.attempts == 2
        async with r.uow.read() as tx:
            assert [m.message_id for m in await tx.messages.list_dead(500)].count(dead.message_id) == 1
    assert len(server.message_ids) == 2
