"""What the notification use cases need from the outside world, as Protocols (implemented in data/ and adapter/)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from notification.model.message import (
    Kind,
    MessageStatus,
    Notice,
    OrderView,
    OutgoingMessage,
    Rendered,
    SentMessage,
)

__all__ = [
    "Claim",
    "DeliveryFailed",
    "Inbox",
    "MessageRepo",
    "NewMessage",
    "OrderDirectory",
    "Renderer",
    "Revived",
    "Sender",
    "Tx",
    "UnitOfWork",
]


class DeliveryFailed(Exception):
    """The channel did not take the message. ``permanent``: retrying cannot help (the recipient's server
    refused the address, 5xx); otherwise it may go through later (connection refused, timeout, 4xx).
    The message is safe to log: it names no recipient."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Sender(Protocol):
    """One channel (email today; SMS and push are other implementations of the same port).

    ``send`` returns once the channel accepted the message, retrying briefly by itself, and raises
    :class:`DeliveryFailed` otherwise."""

    channel: str

    async def send(self, message: OutgoingMessage) -> None: ...


class OrderDirectory(Protocol):
    """The order as the customer is shown it. Raises the order service's refusal as an ``kernel.errors``
    DomainError (NotFound, PermissionDenied, Unavailable for an outage or a deadline…)."""

    async def get(self, order_id: str) -> OrderView | None: ...


class Renderer(Protocol):
    def render(self, kind: Kind, order: OrderView, notice: Notice) -> Rendered: ...


@dataclass(frozen=True, slots=True)
class NewMessage:
    message_id: str
    notice: Notice
    channel: str
    recipient: str
    subject: str


@dataclass(frozen=True, slots=True)
class Claim:
    """The message row for a notice after claiming it: ``status`` SENDING for one to send, SENT or DEAD for
    one already settled. ``fresh``: this claim created the row; otherwise an earlier attempt was interrupted
    (or failed ``attempts`` times) before the outcome was committed. ``held``: this caller holds the lease on
    the SENDING row and is the one sender; if another does, its lease ends in ``lease_left_seconds``."""

    status: MessageStatus
    attempts: int
    fresh: bool
    held: bool = True
    lease_left_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """An event's inbox row: ``consumer`` has handled ``event_id``."""

    consumer: str
    event_id: str


@dataclass(frozen=True, slots=True)
class Revived:
    """A dead letter taken back for a replay: ``notice`` is set when this call moved it DEAD → SENDING (and holds
    its lease); otherwise the message is as it stands (not dead: sent, being sent, replayed already)."""

    message: SentMessage
    notice: Notice | None


class MessageRepo(Protocol):
    """The messages and their dead letters, in the caller's transaction or in autocommit (``UnitOfWork.single``:
    each statement commits by itself)."""

    async def claim(self, message: NewMessage, token: str, lease_seconds: float) -> Claim:
        """Insert the message as SENDING leased to ``token`` for ``lease_seconds`` unless the notice has a row;
        take over a SENDING row whose lease lapsed; return the row as it is now (``held`` when ``token`` has it).
        One conditional statement each, so of two claimers racing exactly one holds the lease."""
        ...

    async def mark_sent_with_inbox(self, message_id: str, consumer: str, event_id: str) -> None:
        """SENT (the lease ends) and the event's inbox row, in one statement."""
        ...

    async def record_failure(self, message_id: str, token: str, error: str) -> int:
        """Count a failed send and end ``token``'s lease; the number of attempts so far."""
        ...

    async def bury(
        self,
        message_id: str,
        token: str,
        error: str,
        *,
        count_attempt: bool = False,
        inbox: InboxEntry | None = None,
    ) -> bool:
        """DEAD (``count_attempt``: counting one more failed send) and its dead-letter row (and ``inbox``'s row),
        if the message is still SENDING and ``token`` holds it (or nobody does), in one
        statement; False when another sender has taken it over (then nothing is written)."""
        ...

    async def revive(self, message_id: str, token: str, lease_seconds: float) -> Revived | None:
        """A DEAD message back to SENDING leased to ``token``, out of the dead letters, with the admin's audit
        entry (a conditional UPDATE: of two replays one revives it). None: no such message."""
        ...

    async def get_message(self, message_id: str) -> SentMessage | None: ...

    async def list_messages(self, limit: int, order_id: str = "") -> list[SentMessage]: ...

    async def list_dead(self, limit: int) -> list[SentMessage]: ...


class Inbox(Protocol):
    async def seen(self, consumer: str, event_id: str) -> bool:
        """The inbox has this event: it was handled (sent, buried or skipped) and committed."""
        ...

    async def claim(self, consumer: str, event_id: str) -> bool:
        """Record that ``consumer`` handled ``event_id``, committed with its effect; False if it already had."""
        ...


class Tx(Protocol):
    """The repositories of one transaction (notification writes no outbox events)."""

    @property
    def messages(self) -> MessageRepo: ...

    @property
    def inbox(self) -> Inbox: ...


class UnitOfWork(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """One open transaction; it commits when the block exits normally and rolls back on an exception."""
        ...

    def read(self) -> AbstractAsyncContextManager[Tx]:
        """For reads: each statement commits by itself (no BEGIN/ROLLBACK round trips)."""
        ...

    def single(self) -> AbstractAsyncContextManager[Tx]:
        """For a step whose writes are one statement (reads may follow): committed by itself, no BEGIN/COMMIT."""
        ...
