"""Notify: one order event, one message to the customer, whatever JetStream redelivers.

Delivery is **at least once, never silently twice**: a message is claimed (a row keyed by the event and the
kind, status SENDING) before it is handed to the channel, and marked SENT together with the event's inbox row
after the channel accepted it. So

* a redelivery after that commit finds the inbox row and sends nothing;
* a crash (or a lost database) between the channel accepting the message and that commit is the one window
  left: the redelivery finds the SENDING row and sends again, with the **same Message-ID**
  (:func:`~notification.model.message.message_id_for`), which mail systems use to recognise a repeat.
  SMTP has no idempotency key, so exactly-once cannot be had from the protocol; we chose a rare duplicate
  over a lost confirmation, and made it recognisable;
* the claim is a **lease** (``NotifyPolicy.lease_seconds``, longer than the consumer's handler timeout): of two
  replicas handling the same event at once (a redelivery outside JetStream's duplicate window, an ack that
  came too late), one holds it and sends; the other finds it held and comes back when the lease ends, to
  find it settled. A claim left by a process that died is taken over once its lease lapses;
* a send that fails, or is cut off by the consumer's handler timeout, is counted on the row; transient failures
  come back with backoff (the consumer's
  redelivery), and after ``max_attempts`` sends, or at once for a permanent refusal, the message is buried in
  the dead-letter table with the inbox row, for an operator (``kassa mail --dead``).

An order that can't be read for good (GetOrder NOT_FOUND, PERMISSION_DENIED, INVALID_ARGUMENT) is a dead letter
naming the refusal, for an operator to see (and replay); a refusal that may pass (UNAVAILABLE, DEADLINE_EXCEEDED,
RESOURCE_EXHAUSTED, INTERNAL…) brings the event back later. No event is dropped silently.

Protects DESIGN.md §4.5 for the customer's inbox (an event's effect, the email, is applied once), and keeps
personal data where it belongs: the address comes from the order service per message and is stored only
encrypted; nothing logged names it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass

from kernel.errors import DomainError, InvalidArgument, NotFound, PermissionDenied
from notification.biz.ports import (
    Claim,
    DeliveryFailed,
    InboxEntry,
    NewMessage,
    OrderDirectory,
    Renderer,
    Sender,
    UnitOfWork,
)
from notification.model.message import MessageStatus, Notice, OutgoingMessage, message_id_for

__all__ = [
    "CONSUMER",
    "PAYMENTS_CONSUMER",
    "Notify",
    "NotifyPolicy",
    "SendLater",
    "bury",
    "claim_message",
    "mark_sent",
    "record_failure",
    "skip",
]

# The durable consumers (and inbox names) of order events and of payment events.
CONSUMER = "notification-orders"
PAYMENTS_CONSUMER = "notification-payments"

log = logging.getLogger("kassa.notification")


# GetOrder refusals that retrying cannot change.
_ORDER_GONE = (NotFound, PermissionDenied, InvalidArgument)


class SendLater(Exception):
    """The message could not be sent now; the event should come back after ``delay_seconds``."""

    def __init__(self, why: str, delay_seconds: float) -> None:
        super().__init__(why)
        self.delay_seconds = delay_seconds


@dataclass(frozen=True, slots=True)
class NotifyPolicy:
    """``max_attempts`` sends (each already retried briefly by the channel) before a message is dead; the
    event comes back after ``backoff_seconds * 2**(attempts-1)``, at most ``max_backoff_seconds``. A claim
    is leased for ``lease_seconds``: longer than one handling of an event may last (the consumer cuts it off
    after 40 s), so a live sender never loses it."""

    max_attempts: int = 5
    lease_seconds: float = 60.0
    # How soon an event whose order could not be read for a passing reason (an outage) comes back.
    order_retry_seconds: float = 10.0
    backoff_seconds: float = 5.0
    max_backoff_seconds: float = 300.0
    message_domain: str = "notification.kassa"

    def delay(self, attempts: int) -> float:
        factor: int = 2 ** max(attempts - 1, 0)
        return min(self.backoff_seconds * factor, self.max_backoff_seconds)


# The steps a message's delivery commits, one statement each (autocommit: no BEGIN/COMMIT round trips);
# ReplayDeadLetter settles a message the same way.


async def claim_message(uow: UnitOfWork, message: NewMessage, token: str, lease_seconds: float) -> Claim:
    """At most one of its statements writes (the insert, else the take-over), each conditional on its own, so a
    transaction around them would add nothing but BEGIN and COMMIT."""
    async with uow.single() as tx:
        return await tx.messages.claim(message, token, lease_seconds)


async def mark_sent(uow: UnitOfWork, message_id: str, consumer: str, event_id: str) -> None:
    """SENT (the lease ends), and the event's inbox row, in one statement."""
    async with uow.single() as tx:
        await tx.messages.mark_sent_with_inbox(message_id, consumer, event_id)


async def record_failure(uow: UnitOfWork, message_id: str, token: str, error: str) -> int:
    async with uow.single() as tx:
        return await tx.messages.record_failure(message_id, token, error)


async def bury(
    uow: UnitOfWork,
    message_id: str,
    token: str,
    error: str,
    *,
    consumer: str,
    event_id: str,
    count_attempt: bool = False,
) -> bool:
    """DEAD, its dead-letter row and the event's inbox row in one statement, unless another sender took it over."""
    async with uow.single() as tx:
        return await tx.messages.bury(
            message_id, token, error, count_attempt=count_attempt, inbox=InboxEntry(consumer, event_id)
        )


async def skip(uow: UnitOfWork, consumer: str, event_id: str) -> None:
    """Only the inbox row: the event needs no message (no such order, no email on it)."""
    async with uow.single() as tx:
        await tx.inbox.claim(consumer, event_id)


class Notify:
    def __init__(
        self,
        uow: UnitOfWork,
        orders: OrderDirectory,
        renderer: Renderer,
        sender: Sender,
        policy: NotifyPolicy | None = None,
    ) -> None:
        self._uow = uow
        self._orders = orders
        self._renderer = renderer
        self._sender = sender
        self._policy = policy or NotifyPolicy()

    async def __call__(self, notice: Notice, consumer: str = CONSUMER) -> str:
        async with self._uow.read() as tx:
            seen = await tx.inbox.seen(consumer, notice.event_id)
        if seen:
            return "duplicate"
        try:
            order = await self._orders.get(notice.order_id)
        except _ORDER_GONE as refused:
            # The order service will say the same thing next time: an operator's case, not a silent drop.
            return await self._undeliverable(notice, consumer, f"GetOrder refused: {refused.reason}")
        except DomainError as refused:
            # UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, our own token refused…: it may pass.
            raise SendLater(f"order {notice.order_id} can't be read now ({refused.reason})",
                            self._policy.order_retry_seconds) from refused  # fmt: skip
        if order is None:
            return await self._undeliverable(notice, consumer, "GetOrder: no such order")
        if not order.email:
            await skip(self._uow, consumer, notice.event_id)
            return "no email on the order: nothing to send"
        rendered = self._renderer.render(notice.kind, order, notice)
        message_id = message_id_for(notice, self._policy.message_domain)
        token = uuid.uuid4().hex
        claim = await claim_message(
            self._uow,
            NewMessage(message_id, notice, self._sender.channel, order.email, rendered.subject),
            token,
            self._policy.lease_seconds,
        )
        if claim.status is not MessageStatus.SENDING:
            # Settled by an earlier delivery whose inbox row is missing (written before the inbox existed).
            await skip(self._uow, consumer, notice.event_id)
            return f"already {claim.status.value.lower()}"
        if not claim.held:
            # Another replica is sending it right now: look again once its lease is over.
            raise SendLater("another sender holds the message's claim", max(claim.lease_left_seconds, 1.0))
        if claim.attempts >= self._policy.max_attempts:
            # Its last sends were cut off (they count too): it is not tried again.
            error = f"undeliverable: {claim.attempts} sends failed or were cut off"
            if not await bury(self._uow, message_id, token, error, consumer=consumer, event_id=notice.event_id):
                raise SendLater("another sender took the message over", self._policy.delay(claim.attempts))
            log.error("%s message for order %s is undeliverable", notice.kind, notice.order_id)
            return "dead letter"
        message = OutgoingMessage(message_id, order.email, rendered.subject, rendered.text, rendered.html)
        try:
            await self._sender.send(message)
        except asyncio.CancelledError:
            # Cut off mid-send (the consumer's handler timeout, a shutdown): counted like any failed send, so an
            # event whose send always hangs ends in the dead letters instead of coming back for ever. Shielded:
            # the count is written even though this task is being cancelled.
            await asyncio.shield(
                record_failure(self._uow, message_id, token, "send cut off before the channel answered")
            )
            raise
        except DeliveryFailed as failed:
            return await self._failed(
                notice, failed, message_id=message_id, token=token, claim=claim, consumer=consumer
            )
        await mark_sent(self._uow, message_id, consumer, notice.event_id)
        return f"{notice.kind.value} sent" + ("" if claim.fresh else " again (an earlier attempt did not finish)")

    async def _undeliverable(self, notice: Notice, consumer: str, why: str) -> str:
        """The order can't be read for good: a dead letter naming why (no recipient known), with the inbox row."""
        message_id = message_id_for(notice, self._policy.message_domain)
        token = uuid.uuid4().hex
        subject = f"{notice.kind.value} for order {notice.order_id}"
        claim = await claim_message(
            self._uow,
            NewMessage(message_id, notice, self._sender.channel, "", subject),
            token,
            self._policy.lease_seconds,
        )
        if claim.status is not MessageStatus.SENDING:
            await skip(self._uow, consumer, notice.event_id)
            return f"already {claim.status.value.lower()}"
        if not claim.held:
            raise SendLater("another sender holds the message's claim", max(claim.lease_left_seconds, 1.0))
        if not await bury(self._uow, message_id, token, why, consumer=consumer, event_id=notice.event_id):
            raise SendLater("another sender took the message over", self._policy.order_retry_seconds)
        log.error("order %s: no %s message (%s); kept as a dead letter", notice.order_id, notice.kind, why)
        return "dead letter"

    async def _failed(
        self, notice: Notice, failed: DeliveryFailed, *, message_id: str, token: str, claim: Claim, consumer: str
    ) -> str:
        error = str(failed)[:500]
        attempts = claim.attempts + 1
        if failed.permanent or attempts >= self._policy.max_attempts:
            # Counted and buried in one transaction, under this sender's lease.
            if not await bury(
                self._uow, message_id, token, error, consumer=consumer, event_id=notice.event_id, count_attempt=True
            ):
                raise SendLater("another sender took the message over", self._policy.delay(attempts))
            log.error(
                "%s message for order %s is undeliverable after %d attempts", notice.kind, notice.order_id, attempts
            )
            return "dead letter"
        attempts = await record_failure(self._uow, message_id, token, error)
        raise SendLater(f"send failed ({error}); attempt {attempts}", self._policy.delay(attempts))
