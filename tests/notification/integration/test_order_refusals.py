"""What the notification service does when GetOrder refuses: a lasting refusal (NOT_FOUND) is a dead letter
naming it, listed for operators; a passing one (the order service unreachable) brings the event back later and
writes nothing. Real Postgres, the real order service, an SMTP sink."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from notification_support import confirmation, replica

from devstack.localstack import free_port
from infra.config import Settings
from infra.server import Server
from notification.biz.notify import CONSUMER, NotifyPolicy, SendLater
from notification.data.tables import inbox, messages

pytestmark = pytest.mark.integration


async def test_an_order_the_order_service_does_not_know_is_a_dead_letter_naming_why(
    order_server: Server, sink: Any, settings: Settings
) -> None:
    notice = confirmation(str(uuid.uuid4()))
    async with replica(settings, order_server.port, sink.url) as r:
        assert await r.notify(notice, CONSUMER) == "dead letter"
        async with r.uow.read() as tx:
            [dead] = [m for m in await tx.messages.list_dead(500) if m.event_id == notice.event_id]
        assert dead.status.value == "DEAD" and "NOT_FOUND" in dead.last_error
        assert dead.order_id == notice.order_id
        # Settled with its inbox row: a redelivery does nothing more.
        assert await r.notify(notice, CONSUMER) == "duplicate"


async def test_an_unreachable_order_service_brings_the_event_back_and_writes_nothing(
    sink: Any, settings: Settings
) -> None:
    notice = confirmation(str(uuid.uuid4()))
    policy = NotifyPolicy(order_retry_seconds=7.0)
    async with replica(settings, free_port(), sink.url, policy) as r:
        with pytest.raises(SendLater) as later:
            await r.notify(notice, CONSUMER)
        assert later.value.delay_seconds == 7.0
        async with r.engine.connect() as conn:
            rows = (await conn.execute(sa.select(messages).where(messages.c.event_id == notice.event_id))).all()
            seen = (await conn.execute(sa.select(inbox).where(inbox.c.event_id == notice.event_id))).all()
    assert rows == [] and seen == []
