"""Fakes of notification's ports for the unit tests: the unit of work (over an in-memory store), the order
service, the renderer and the channel."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kernel.errors import Unavailable
from kernel.money import Money
from notification.biz.ports import Claim, DeliveryFailed, InboxEntry, NewMessage, Revived
from notification.model.message import (
    Kind,
    MessageStatus,
    Notice,
    OrderView,
    OutgoingMessage,
    Rendered,
    SentMessage,
)

USD = Money("USD", 1000)
ORDER = OrderView("o-1", "ada@example.com", "Ada", "CONFIRMED", "USD", (), USD, USD, USD, USD, USD, "standard", "tok")


@dataclass
class FakeStore:
    """What the fake transactions write: message rows, inbox rows and dead letters (no rollback: nothing here fails)."""

    rows: dict[str, dict[str, object]] = field(default_factory=dict)
    inbox: set[tuple[str, str]] = field(default_factory=set)
    dead: list[str] = field(default_factory=list)


@dataclass
class FakeMessages:
    store: FakeStore

    async def claim(self, message: NewMessage, token: str, lease_seconds: float) -> Claim:
        """A lease that never lapses by itself: a row left SENDING with no holder (a crash) is taken over."""
        row = self.store.rows.get(message.message_id)
        if row is None:
            self.store.rows[message.message_id] = {"status": MessageStatus.SENDING, "attempts": 0, "holder": token}
            return Claim(MessageStatus.SENDING, 0, fresh=True)
        if row["status"] is MessageStatus.SENDING and row.get("holder") is None:
            row["holder"] = token
            return Claim(MessageStatus.SENDING, row["attempts"], fresh=False)  # type: ignore[arg-type]
        held = row.get("holder") == token
        return Claim(row["status"], row["attempts"], fresh=False, held=held, lease_left_seconds=30.0)  # type: ignore[arg-type]

    async def mark_sent_with_inbox(self, message_id: str, consumer: str, event_id: str) -> None:
        self.store.rows[message_id].update(status=MessageStatus.SENT, holder=None)
        self.store.inbox.add((consumer, event_id))

    async def record_failure(self, message_id: str, token: str, error: str) -> int:
        row = self.store.rows[message_id]
        row["attempts"] = int(row["attempts"]) + 1  # type: ignore[call-overload]
        if row.get("holder") == token:
            row["holder"] = None
        return int(row["attempts"])  # type: ignore[call-overload]

    async def bury(
        self,
        message_id: str,
        token: str,
        error: str,
        *,
        count_attempt: bool = False,
        inbox: InboxEntry | None = None,
    ) -> bool:
        row = self.store.rows[message_id]
        if row["status"] is not MessageStatus.SENDING or row.get("holder") not in (token, None):
            return False
        row.update(status=MessageStatus.DEAD, holder=None, attempts=int(row["attempts"]) + int(count_attempt))  # type: ignore[call-overload]
        self.store.dead.append(message_id)
        if inbox is not None:
            self.store.inbox.add((inbox.consumer, inbox.event_id))
        return True

    async def revive(self, message_id: str, token: str, lease_seconds: float) -> Revived | None:
        raise NotImplementedError

    async def get_message(self, message_id: str) -> SentMessage | None:
        return None

    async def list_messages(self, limit: int, order_id: str = "") -> list[SentMessage]:
        return []

    async def list_dead(self, limit: int) -> list[SentMessage]:
        return []


@dataclass
class FakeInbox:
    store: FakeStore

    async def seen(self, consumer: str, event_id: str) -> bool:
        return (consumer, event_id) in self.store.inbox

    async def claim(self, consumer: str, event_id: str) -> bool:
        if (consumer, event_id) in self.store.inbox:
            return False
        self.store.inbox.add((consumer, event_id))
        return True


class FakeTx:
    def __init__(self, store: FakeStore) -> None:
        self.messages = FakeMessages(store)
        self.inbox = FakeInbox(store)


class FakeUnitOfWork(FakeStore):
    """The UnitOfWork port over one FakeStore; ``rows``, ``inbox`` and ``dead`` are what was committed."""

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeTx]:
        yield FakeTx(self)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[FakeTx]:
        yield FakeTx(self)

    @contextlib.asynccontextmanager
    async def single(self) -> AsyncIterator[FakeTx]:
        yield FakeTx(self)


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
