"""A durable JetStream pull consumer of outbox events, shared by every service that reacts to events.

DESIGN.md §3 and §4.5: explicit ack, sent only after the handler's effect committed; a handler
commits its effect together with an inbox claim (``infra.outbox.claim_inbox``), so a redelivered or
republished event has no second effect. A handler that raises is retried later (``nak`` with a
delay); a message that is not an event envelope is terminated. Safe with several replicas: they
share the durable consumer, and JetStream hands each message to one of them at a time.

A handler answers with what it did (a short word for the log). It raises :class:`Retry` to ask
for redelivery without an error being logged: for an event that arrived before the state it
applies to exists (a payment webhook before ConfirmCheckout has placed the order).

JetStream redelivers a message whose ack has not arrived within ``ack_wait``, to this replica or
another. So that a message is never handled by two replicas at once, a handler is cut off after
``handler_timeout_seconds`` (less than ``ack_wait``; the event is nak'ed and retried) and the
messages of a batch still waiting their turn are marked in progress before their ``ack_wait`` can
run out. An ack that is lost (a crash after the effect, a NATS restart) only means a redelivery,
which the inbox makes harmless; no failure around one message stops the loop or the rest of its
batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, cast

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from infra import faults
from infra.events import stream_for, subject
from infra.logs import log_ids_var
from infra.tracing import ID_KEYS, TRACEPARENT, annotate, consumer_span

__all__ = ["Event", "EventConsumer", "Handler", "Retry"]

log = logging.getLogger("kassa.consumer")

_RETRY_DELAY_SECONDS = 2.0
_FETCH_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Event:
    """The part of an outbox envelope a handler needs."""

    event_id: str
    event_type: str
    aggregate_id: str
    data: dict[str, Any]

    @staticmethod
    def from_envelope(envelope: Any, event_types: Collection[str]) -> Event | None:
        """None for anything that is not a well-formed envelope of one of ``event_types``."""
        if not isinstance(envelope, dict):
            return None
        event_id, event_type, data = envelope.get("event_id"), envelope.get("event_type"), envelope.get("data")
        if not isinstance(event_id, str) or not event_id or event_type not in event_types:
            return None
        if not isinstance(data, dict):
            return None
        return Event(event_id, cast(str, event_type), str(envelope.get("aggregate_id") or ""), data)


def _annotate_event(event: Event) -> None:
    """The ids an event names (its data's session_id, order_id, cart_id, payment_id), on its span and log lines."""
    ids = {key: value for key in ID_KEYS if isinstance(value := event.data.get(key), str) and value}
    if ids:
        annotate(**ids)


class Retry(Exception):
    """Redeliver this event later; nothing went wrong (the state it needs is not there yet)."""

    def __init__(self, why: str, delay_seconds: float = _RETRY_DELAY_SECONDS) -> None:
        super().__init__(why)
        self.delay_seconds = delay_seconds


Handler = Callable[[Event], Awaitable[str]]


class EventConsumer:
    """Consume ``event_types`` published by ``service`` under the durable name ``name``."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        name: str,
        service: str,
        event_types: Iterable[str],
        handler: Handler,
        batch: int = 32,
        ack_wait_seconds: int = 30,
        handler_timeout_seconds: float | None = None,
        retry_delay_seconds: float = _RETRY_DELAY_SECONDS,
        from_now_on: bool = False,
    ) -> None:
        """``from_now_on``: a durable consumer created today starts at the events published from now on rather
        than at the start of the stream (days of history), for effects that must not be replayed on a first
        deployment, such as email to customers; once it exists it resumes where it left off either way."""
        self._js = js
        self.name = name
        self._service = service
        self._event_types = tuple(event_types)
        self._handler = handler
        self._batch = batch
        self._ack_wait = ack_wait_seconds
        self._handler_timeout = ack_wait_seconds / 2 if handler_timeout_seconds is None else handler_timeout_seconds
        if not 0 < self._handler_timeout < ack_wait_seconds:
            raise ValueError(f"{name}: handler_timeout_seconds must be positive and shorter than ack_wait_seconds")
        # Waiting messages are marked in progress this often, so none reaches its ack_wait before its turn
        # ends: at most this long since the last mark, plus one handler's time, stays under ack_wait.
        self._refresh_every = (ack_wait_seconds - self._handler_timeout) / 2
        self._retry_delay = retry_delay_seconds
        self._fault_point = f"consumer.{name}.after_effect"
        self._deliver = DeliverPolicy.NEW if from_now_on else DeliverPolicy.ALL

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        stream = stream_for(self._service)
        await self._js.add_consumer(
            stream,
            ConsumerConfig(
                name=self.name,
                durable_name=self.name,
                filter_subjects=[subject(self._service, event_type) for event_type in self._event_types],
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=self._deliver,
                ack_wait=self._ack_wait,
                max_ack_pending=1000,
            ),
        )
        return await self._js.pull_subscribe_bind(durable=self.name, stream=stream)

    async def handle(self, msg: Msg) -> None:
        """Apply one message; ack when done or unusable, nak (redeliver later) when it failed or must wait.

        Nothing raises out of here but cancellation: a message whose ack or nak could not be sent is
        simply redelivered after ``ack_wait``.
        """
        try:
            envelope = json.loads(msg.data)
        except ValueError:
            envelope = None
        event = Event.from_envelope(envelope, self._event_types)
        try:
            if event is None:
                log.error("%s: dropping a malformed event on %s", self.name, msg.subject)
                await msg.term()
                return
            headers = msg.headers or {}
            parent = headers.get(TRACEPARENT) or (envelope.get(TRACEPARENT) if isinstance(envelope, dict) else None)
            attributes = {"messaging.system": "nats", "messaging.destination.name": msg.subject}
            ids = log_ids_var.set(None)  # one message's ids never label the next one's log lines
            try:
                with consumer_span(
                    f"{self.name} {event.event_type}", parent if isinstance(parent, str) else None, attributes
                ):
                    _annotate_event(event)
                    await self._apply(msg, event)
            finally:
                log_ids_var.reset(ids)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "%s: could not answer JetStream for a message on %s; it will be redelivered", self.name, msg.subject
            )

    async def _apply(self, msg: Msg, event: Event) -> None:
        timer = asyncio.timeout(self._handler_timeout)
        try:
            async with timer:
                outcome = await self._handler(event)
        except Retry as wait:
            log.info("%s: event %s (%s) waits: %s", self.name, event.event_id, event.event_type, wait)
            await msg.nak(delay=wait.delay_seconds)
            return
        except Exception:
            if timer.expired():
                # Cut off before ack_wait runs out, so no other replica gets it while this one still works on it.
                log.error(
                    "%s: event %s (%s) took over %.1fs, will be redelivered",
                    self.name,
                    event.event_id,
                    event.event_type,
                    self._handler_timeout,
                )
            else:
                log.exception(
                    "%s: event %s (%s) failed, will be redelivered", self.name, event.event_id, event.event_type
                )
            await msg.nak(delay=self._retry_delay)
            return
        log.info("%s: event %s (%s): %s", self.name, event.event_id, event.event_type, outcome)
        # A crash here (the effect committed, the ack not sent) is redelivered; the inbox drops the repeat.
        await faults.ahit(self._fault_point)
        await msg.ack()

    async def _handle_batch(self, msgs: list[Msg]) -> None:
        """Handle a fetched batch in order, keeping the messages still waiting from reaching ack_wait."""
        loop = asyncio.get_running_loop()
        marked = loop.time()
        for i, msg in enumerate(msgs):
            if loop.time() - marked > self._refresh_every:
                for waiting in msgs[i:]:
                    with contextlib.suppress(Exception):
                        await waiting.in_progress()
                marked = loop.time()
            await self.handle(msg)

    async def run(self) -> None:
        """Consume until cancelled; subscription failures are retried."""
        sub: JetStreamContext.PullSubscription | None = None
        while True:
            try:
                if sub is None:
                    sub = await self._subscribe()
                msgs = await sub.fetch(self._batch, timeout=_FETCH_SECONDS)
            except (nats.errors.TimeoutError, TimeoutError):
                # Nothing to fetch (nats-py raises the builtin TimeoutError when a batch fetch comes back empty):
                # fetch again, not an error to log, resubscribe and back off from.
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: fetch failed, retrying", self.name)
                if sub is not None:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
                sub = None
                await asyncio.sleep(self._retry_delay)
                continue
            await self._handle_batch(msgs)
