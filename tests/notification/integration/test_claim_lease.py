"""The message claim is a lease: of two notification replicas handling one event at once, exactly one sends;
a claim left by a process that died is taken over once its lease lapses. Real Postgres, order service, SMTP sink."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from notification_support import confirmation, placed_order, replica

from devstack.smtp_sink import read_mailbox
from infra.config import Settings
from infra.server import Server
from kassa.order.v1.order_service_pb2_grpc import OrderServiceStub
from notification.biz.notify import SendLater
from notification.biz.ports import NewMessage
from notification.model.message import MessageStatus, message_id_for

pytestmark = pytest.mark.integration

ROUNDS = 8
DOMAIN = "notification.kassa"


def mails_with(mail_dir: Any, message_id: str) -> int:
    return sum(1 for m in read_mailbox(mail_dir) if m.message_id.strip() == message_id)


async def test_two_replicas_handling_the_same_event_send_it_once(
    orders: OrderServiceStub, order_server: Server, service_token: str, sink: Any, settings: Settings
) -> None:
    async with (
        replica(settings, order_server.port, sink.url) as a,
        replica(settings, order_server.port, sink.url) as b,
    ):
        for _ in range(ROUNDS):
            order = await placed_order(orders, service_token, f"ada-{uuid.uuid4().hex[:8]}@example.com")
            notice = confirmation(order.order_id)
            outcomes = await asyncio.gather(a.notify(notice), b.notify(notice), return_exceptions=True)
            sent = [o for o in outcomes if o == "confirmation sent"]
            waiting = [o for o in outcomes if isinstance(o, SendLater)]
            assert len(sent) == 1, outcomes
            # The other found the claim held (and comes back later) or came after it was settled.
            assert len(waiting) == 1 or "duplicate" in outcomes or "already sent" in outcomes, outcomes
            assert mails_with(sink.mail_dir, message_id_for(notice, DOMAIN)) == 1
            # Its comeback finds the message sent.
            assert await b.notify(notice) == "duplicate"


async def test_a_held_claim_is_left_alone_and_a_lapsed_one_is_taken_over(
    orders: OrderServiceStub, order_server: Server, service_token: str, sink: Any, settings: Settings
) -> None:
    async with replica(settings, order_server.port, sink.url) as r:
        email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
        order = await placed_order(orders, service_token, email)
        notice = confirmation(order.order_id)
        message_id = message_id_for(notice, DOMAIN)
        # Another replica claimed it and is sending it now (a minute's lease).
        async with r.uow.transaction() as tx:
            held = await tx.messages.claim(NewMessage(message_id, notice, "email", email, "subject"), "other", 60.0)
        assert held.held and held.fresh
        with pytest.raises(SendLater) as later:
            await r.notify(notice)
        assert 1.0 <= later.value.delay_seconds <= 60.0
        assert mails_with(sink.mail_dir, message_id) == 0

        # A claim whose holder died: its lease lapsed, so the next delivery takes it over and sends.
        order = await placed_order(orders, service_token, email)
        notice = confirmation(order.order_id)
        message_id = message_id_for(notice, DOMAIN)
        async with r.uow.transaction() as tx:
            crashed = await tx.messages.claim(NewMessage(message_id, notice, "email", email, "subject"), "crashed", 0.0)
        assert crashed.status is MessageStatus.SENDING
        assert "again" in await r.notify(notice)
        assert mails_with(sink.mail_dir, message_id) == 1
