"""Notify with fakes: when a message is sent, sent again, retried later or buried."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from infra.errors import Unavailable
from infra.money import Money
from notification.biz.notify import CONSUMER, Notify, NotifyPolicy, SendLater
from notification.biz.ports import Claim, DeliveryFailed, NewMessage
from notification.model.message import (
    Kind,
    MessageStatus,
    Notice,
    OrderView,
    OutgoingMessage,
    Rendered,
    SentMessage,
)

pytestmark = pytest.mark.unit

USD = Money("USD", 1000)
ORDER = OrderView("o-1", "ada@example.com", "Ada", "CONFIRMED", "USD", (), USD, USD, USD, USD, USD, "standard", "tok")


@dataclass
class FakeRepo:
    rows: dict[str, dict[str, object]] = field(default_factory=dict)
    inbox: set[tuple[str, str]] = field(default_factory=set)
    dead: list[str] = field(default_factory=list)

    async def seen(self, consumer: str, event_id: str) -> bool:
        return (consumer, event_id) in self.inbox

    async def claim(self, message: NewMessage, token: str, lease_seconds: float) -> Claim:
        """A lease that never lapses by itself: a row left SENDING with no holder (a crash) is taken over."""
        row = self.rows.get(message.message_id)
        if row is None:
            self.rows[message.message_id] = {"status": MessageStatus.SENDING, "attempts": 0, "holder": token}
            return Claim(MessageStatus.SENDING, 0, fresh=True)
        if row["status"] is MessageStatus.SENDING and row.get("holder") is None:
            row["holder"] = token
            return Claim(MessageStatus.SENDING, row["attempts"], fresh=False)  # type: ignore[arg-type]
        held = row.get("holder") == token
        return Claim(row["status"], row["attempts"], fresh=False, held=held, lease_left_seconds=30.0)  # type: ignore[arg-type]

    async def mark_sent(self, message_id: str, consumer: str, event_id: str) -> None:
        self.rows[message_id].update(status=MessageStatus.SENT, holder=None)
        self.inbox.add((consumer, event_id))

    async def record_failure(self, message_id: str, token: str, error: str) -> int:
        row = self.rows[message_id]
        row["attempts"] = int(row["attempts"]) + 1  # type: ignore[call-overload]
        if row.get("holder") == token:
            row["holder"] = None
        return int(row["attempts"])  # type: ignore[call-overload]

    async def bury(
        self, message_id: str, token: str, error: str, consumer: str, event_id: str, *, count_attempt: bool = False
    ) -> bool:
        row = self.rows[message_id]
        if row["status"] is not MessageStatus.SENDING or row.get("holder") not in (token, None):
            return False
        row.update(status=MessageStatus.DEAD, holder=None, attempts=int(row["attempts"]) + int(count_attempt))  # type: ignore[call-overload]
        self.dead.append(message_id)
        self.inbox.add((consumer, event_id))
        return True

    async def skip(self, consumer: str, event_id: str) -> None:
        self.inbox.add((consumer, event_id))

    async def list_messages(self, limit: int, order_id: str = "") -> list[SentMessage]:
        return []

    async def list_dead(self, limit: int) -> list[SentMessage]:
        return []


@dataclass
class FakeOrders:
    order: OrderView | None = ORDER
    down: bool = False

    async def get(self, order_id: str) -> OrderView | None:
        if self.down:
            raise Unavailable("order service down")
        return self.order


class FakeRenderer:
    def render(self, kind: Kind, order: OrderView, notice: Notice) -> Rendered:
        return Rendered(f"{kind} {order.order_id}", "text", "<p>html</p>")


@dataclass
class FakeSender:
    channel: str = "email"
    failures: list[DeliveryFailed] = field(default_factory=list)
    sent: list[OutgoingMessage] = field(default_factory=list)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    async def send(self, message: OutgoingMessage) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)


NOTICE = Notice("ev-1", "OrderConfirmed", Kind.CONFIRMATION, "o-1")


def _notify(repo: FakeRepo, sender: FakeSender, orders: FakeOrders | None = None, attempts: int = 3) -> Notify:
    return Notify(repo, orders or FakeOrders(), FakeRenderer(), sender, NotifyPolicy(max_attempts=attempts))


async def test_one_message_per_event_even_when_redelivered() -> None:
    repo, sender = FakeRepo(), FakeSender()
    notify = _notify(repo, sender)
    assert await notify(NOTICE) == "confirmation sent"
    assert await notify(NOTICE) == "duplicate"
    assert [m.message_id for m in sender.sent] == ["<ev-1.confirmation@notification.kassa>"]
    assert (CONSUMER, "ev-1") in repo.inbox


async def test_a_send_interrupted_before_its_commit_is_sent_again_with_the_same_message_id() -> None:
    repo, sender = FakeRepo(), FakeSender()
    notify = _notify(repo, sender)
    # The claim committed, the send happened, the process died before mark_sent: the row is still SENDING.
    repo.rows["<ev-1.confirmation@notification.kassa>"] = {"status": MessageStatus.SENDING, "attempts": 0}
    assert "again" in await notify(NOTICE)
    assert [m.message_id for m in sender.sent] == ["<ev-1.confirmation@notification.kassa>"]


async def test_transient_failures_come_back_later_with_growing_delays_then_die() -> None:
    repo = FakeRepo()
    sender = FakeSender(failures=[DeliveryFailed("SMTP 451", permanent=False) for _ in range(3)])
    notify = _notify(repo, sender, attempts=3)
    delays = []
    for _ in range(2):
        with pytest.raises(SendLater) as later:
            await notify(NOTICE)
        delays.append(later.value.delay_seconds)
    assert delays == [5.0, 10.0]
    assert await notify(NOTICE) == "dead letter"
    assert repo.dead == ["<ev-1.confirmation@notification.kassa>"] and sender.sent == []
    assert await notify(NOTICE) == "duplicate"


async def test_a_permanent_refusal_is_buried_at_once() -> None:
    repo, sender = FakeRepo(), FakeSender(failures=[DeliveryFailed("SMTP [550]", permanent=True)])
    assert await _notify(repo, sender)(NOTICE) == "dead letter"
    assert repo.dead and sender.sent == []


async def test_an_order_service_outage_comes_back_later_and_a_missing_order_is_a_dead_letter() -> None:
    repo, sender = FakeRepo(), FakeSender()
    with pytest.raises(SendLater):
        await _notify(repo, sender, FakeOrders(down=True))(NOTICE)
    assert not repo.inbox and not repo.rows
    assert await _notify(repo, sender, FakeOrders(order=None))(NOTICE) == "dead letter"
    assert (CONSUMER, "ev-1") in repo.inbox and repo.dead and sender.sent == []
