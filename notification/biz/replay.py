"""ReplayDeadLetter: an operator sends one dead letter again, once."""

from __future__ import annotations

import asyncio
import logging
import uuid

from kernel.errors import DomainError, NotFound
from notification.biz.notify import CONSUMER, PAYMENTS_CONSUMER, NotifyPolicy, bury, mark_sent
from notification.biz.ports import DeliveryFailed, OrderDirectory, Renderer, Sender, UnitOfWork
from notification.model.message import PAYMENT_EVENT_KINDS, Notice, OutgoingMessage, SentMessage

__all__ = ["ReplayDeadLetter"]

log = logging.getLogger("kassa.notification.replay")

_PAYMENT_KINDS = frozenset(PAYMENT_EVENT_KINDS.values())


class ReplayDeadLetter:
    """Protects DESIGN.md §4.5 for the customer's inbox (an event's email is sent once, recognisably): the
    replay takes the message DEAD → SENDING by a conditional UPDATE under a lease (the same claim the consumers
    take), so of two replays, or a replay and a late redelivery, exactly one sends, and only what was dead is
    sent again. It re-reads the order (a corrected address is used), sends with the message's own Message-ID,
    and ends SENT, or DEAD again with the new error (also when the call is cut off), never stuck SENDING.
    A message that is not dead (sent, being sent, replayed already) is answered as it is and nothing is sent.
    The admin's action is audited in the transaction that revives the message."""

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

    async def __call__(self, message_id: str) -> SentMessage:
        token = uuid.uuid4().hex
        async with self._uow.transaction() as tx:
            revived = await tx.messages.revive(message_id, token, self._policy.lease_seconds)
        if revived is None:
            raise NotFound(f"no message {message_id}")
        notice = revived.notice
        if notice is None:
            return revived.message
        consumer = PAYMENTS_CONSUMER if notice.kind in _PAYMENT_KINDS else CONSUMER
        try:
            order = await self._orders.get(notice.order_id)
        except DomainError as refused:
            return await self._bury(message_id, token, notice, consumer, f"replay: GetOrder refused: {refused.reason}")
        if order is None or not order.email:
            return await self._bury(message_id, token, notice, consumer, "replay: the order has no email")
        rendered = self._renderer.render(notice.kind, order, notice)
        message = OutgoingMessage(message_id, order.email, rendered.subject, rendered.text, rendered.html)
        try:
            await self._sender.send(message)
        except asyncio.CancelledError:
            # The caller gave up mid-send: dead again rather than SENDING with nobody left to finish it.
            await asyncio.shield(
                self._bury(message_id, token, notice, consumer, "replay cut off before the channel answered")
            )
            raise
        except DeliveryFailed as failed:
            return await self._bury(message_id, token, notice, consumer, f"replay: {failed}"[:500], count=True)
        await mark_sent(self._uow, message_id, consumer, notice.event_id)
        log.info("dead letter %s for order %s replayed and sent", message_id, notice.order_id)
        return await self._settled(message_id)

    async def _bury(
        self, message_id: str, token: str, notice: Notice, consumer: str, error: str, *, count: bool = False
    ) -> SentMessage:
        await bury(
            self._uow, message_id, token, error, consumer=consumer, event_id=notice.event_id, count_attempt=count
        )
        log.error("dead letter %s for order %s replayed and still undeliverable", message_id, notice.order_id)
        return await self._settled(message_id)

    async def _settled(self, message_id: str) -> SentMessage:
        async with self._uow.read() as tx:
            message = await tx.messages.get_message(message_id)
        if message is None:
            raise NotFound(f"no message {message_id}")
        return message
