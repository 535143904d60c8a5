"""Notify with fakes: when a message is sent, sent again, retried later or buried."""

from __future__ import annotations

import pytest

from notification.biz.notify import CONSUMER, Notify, NotifyPolicy, SendLater
from notification.biz.ports import DeliveryFailed
from notification.model.message import Kind, MessageStatus, Notice
from tests.notification.fakes import FakeOrders, FakeRenderer, FakeSender, FakeUnitOfWork

pytestmark = pytest.mark.unit


NOTICE = Notice("ev-1", "OrderConfirmed", Kind.CONFIRMATION, "o-1")


def _notify(uow: FakeUnitOfWork, sender: FakeSender, orders: FakeOrders | None = None, attempts: int = 3) -> Notify:
    return Notify(uow, orders or FakeOrders(), FakeRenderer(), sender, NotifyPolicy(max_attempts=attempts))


async def test_one_message_per_event_even_when_redelivered() -> None:
    uow, sender = FakeUnitOfWork(), FakeSender()
    notify = _notify(uow, sender)
    assert await notify(NOTICE) == "confirmation sent"
    assert await notify(NOTICE) == "duplicate"
    assert [m.message_id for m in sender.sent] == ["<ev-1.confirmation@notification.kassa>"]
    assert (CONSUMER, "ev-1") in uow.inbox


async def test_a_send_interrupted_before_its_commit_is_sent_again_with_the_same_message_id() -> None:
    uow, sender = FakeUnitOfWork(), FakeSender()
    notify = _notify(uow, sender)
    # The claim committed, the send happened, the process died before mark_sent: the row is still SENDING.
    uow.rows["<ev-1.confirmation@notification.kassa>"] = {"status": MessageStatus.SENDING, "attempts": 0}
    assert "again" in await notify(NOTICE)
    assert [m.message_id for m in sender.sent] == ["<ev-1.confirmation@notification.kassa>"]


async def test_transient_failures_come_back_later_with_growing_delays_then_die() -> None:
    uow = FakeUnitOfWork()
    sender = FakeSender(failures=[DeliveryFailed("SMTP 451", permanent=False) for _ in range(3)])
    notify = _notify(uow, sender, attempts=3)
    delays = []
    for _ in range(2):
        with pytest.raises(SendLater) as later:
            await notify(NOTICE)
        delays.append(later.value.delay_seconds)
    assert delays == [5.0, 10.0]
    assert await notify(NOTICE) == "dead letter"
    assert uow.dead == ["<ev-1.confirmation@notification.kassa>"] and sender.sent == []
    assert await notify(NOTICE) == "duplicate"


async def test_a_permanent_refusal_is_buried_at_once() -> None:
    uow, sender = FakeUnitOfWork(), FakeSender(failures=[DeliveryFailed("SMTP [550]", permanent=True)])
    assert await _notify(uow, sender)(NOTICE) == "dead letter"
    assert uow.dead and sender.sent == []


async def test_an_order_service_outage_comes_back_later_and_a_missing_order_is_a_dead_letter() -> None:
    uow, sender = FakeUnitOfWork(), FakeSender()
    with pytest.raises(SendLater):
        await _notify(uow, sender, FakeOrders(down=True))(NOTICE)
    assert not uow.inbox and not uow.rows
    assert await _notify(uow, sender, FakeOrders(order=None))(NOTICE) == "dead letter"
    assert (CONSUMER, "ev-1") in uow.inbox and uow.dead and sender.sent == []
