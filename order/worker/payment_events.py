"""Durable JetStream pull consumer of payment outcomes for async payment methods (3-D Secure).

Explicit ack, only after the effect committed; the effect and the inbox claim share a transaction
(see :class:`order.biz.apply_payment_event.ApplyPaymentEvent`), so a redelivered or republished
event has no second effect. Safe with several replicas: they share the durable consumer.
"""

from __future__ import annotations

import asyncio
import json
import logging

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from infra.events import stream_for, subject
from order.biz.apply_payment_event import CONSUMER, EVENT_OUTCOMES, ApplyPaymentEvent, PaymentEvent

__all__ = ["PaymentEventConsumer"]

log = logging.getLogger("kassa.order.payments")

_RETRY_DELAY_SECONDS = 2.0


class PaymentEventConsumer:
    def __init__(self, js: JetStreamContext, apply: ApplyPaymentEvent, *, batch: int = 32, ack_wait: int = 30) -> None:
        self._js = js
        self._apply = apply
        self._batch = batch
        self._ack_wait = ack_wait

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        stream = stream_for("payment")
        await self._js.add_consumer(
            stream,
            ConsumerConfig(
                name=CONSUMER,
                durable_name=CONSUMER,
                filter_subjects=[subject("payment", event_type) for event_type in EVENT_OUTCOMES],
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self._ack_wait,
                max_ack_pending=1000,
            ),
        )
        return await self._js.pull_subscribe_bind(durable=CONSUMER, stream=stream)

    async def handle(self, msg: Msg) -> None:
        """Apply one message; ack when done or unusable, nak (redeliver later) on a transient failure."""
        try:
            envelope = json.loads(msg.data)
        except ValueError:
            envelope = None
        event = PaymentEvent.from_envelope(envelope)
        if event is None:
            log.error("dropping malformed payment event on %s", msg.subject)
            await msg.term()
            return
        try:
            disposition = await self._apply(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("payment event %s failed, will be redelivered", event.event_id)
            await msg.nak(delay=_RETRY_DELAY_SECONDS)
            return
        log.info("payment event %s (%s): %s", event.event_id, event.event_type, disposition.value)
        await msg.ack()

    async def run(self) -> None:
        """Consume until cancelled; subscription failures are retried."""
        sub: JetStreamContext.PullSubscription | None = None
        while True:
            try:
                if sub is None:
                    sub = await self._subscribe()
                msgs = await sub.fetch(self._batch, timeout=5)
            except nats.errors.TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("payment consumer: fetch failed, retrying")
                sub = None
                await asyncio.sleep(_RETRY_DELAY_SECONDS)
                continue
            for msg in msgs:
                await self.handle(msg)
