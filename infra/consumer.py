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

Fetching: the consumer keeps one pull request of ``batch`` messages open at JetStream for up to
``_PULL_SECONDS`` and handles messages as they arrive on its inbox, renewing the request when it is used up
or expires. A delivery costs the message and its ack: no pull request, no-wait probe and end-of-batch
status per message, which a fetch of a batch (nats-py's ``fetch``) cost whenever events arrive one at a time.
A request lost with its server (a NATS restart) is renewed once its expiry has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, cast

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from infra import faults
from infra.events import stream_for, subject
from infra.logs import log_ids_var
from infra.tracing import ID_KEYS, TRACEPARENT, annotate, consumer_span

__all__ = ["Event", "EventConsumer", "Handler", "Retry"]

log = logging.getLogger("kassa.consumer")

_RETRY_DELAY_SECONDS = 2.0
# How long a pull request stays open at JetStream; an idle consumer renews it this often.
_PULL_SECONDS = 5.0
# A request whose end (a 408 status) has not come this long after its expiry is taken as lost (a NATS restart).
_PULL_GRACE_SECONDS = 1.0
_STATUS = "Status"


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
        pull_seconds: float = _PULL_SECONDS,
    ) -> None:
        """``from_now_on``: a durable consumer created today starts at the events published from now on rather
        than at the start of the stream (days of history), for effects that must not be replayed on a first
        deployment, such as email to customers; once it exists it resumes where it left off either way.
        ``pull_seconds``: how long a pull request stays open (an idle consumer renews it this often, and a request
        lost with its server is renewed this long after it was sent, plus a second)."""
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
        self._pull_seconds = pull_seconds
        # The open pull request: how many messages it may still deliver, and when JetStream ends it.
        self._credit = 0
        self._expires_at = 0.0
        self._arrived: deque[Msg] = deque()
        self._arrival = asyncio.Event()
        self._trouble: str | None = None  # why JetStream ended the last request, when it was not its expiry
        self.pull_requests = 0  # requests sent since start (a test counts them)

    async def _subscribe(self) -> Subscription:
        """Create (or find) the durable consumer, and subscribe an inbox of this replica's own for its messages."""
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
        nc = self._js._nc  # the JetStream context's connection (nats-py names it privately)
        self._next_subject = f"{self._js._prefix}.CONSUMER.MSG.NEXT.{stream}.{self.name}"
        self._inbox = nc.new_inbox()
        self._credit = 0
        self._arrived.clear()
        self._trouble = None
        return await nc.subscribe(self._inbox, cb=self._arrive)

    async def _arrive(self, msg: Msg) -> None:
        self._arrived.append(msg)
        self._arrival.set()

    async def _request(self) -> None:
        """Open a pull request for ``batch`` messages, ending after ``_pull_seconds`` (no no-wait probe)."""
        loop = asyncio.get_running_loop()
        expires = int(self._pull_seconds * 1_000_000_000)
        await self._js._nc.publish(
            self._next_subject, json.dumps({"batch": self._batch, "expires": expires}).encode(), reply=self._inbox
        )
        self.pull_requests += 1
        self._credit = self._batch
        self._expires_at = loop.time() + self._pull_seconds

    def _take_arrived(self, into: deque[Msg]) -> None:
        """Move what came in on the inbox into ``into``: event messages, each using a unit of the request's credit.
        A status ends the request: 408 (it expired) is renewed at once; anything else (409: JetStream refused or
        ended it, 503: no consumer to answer) is trouble, answered by resubscribing after the retry delay. A 100 is
        an idle heartbeat."""
        while self._arrived:
            msg = self._arrived.popleft()
            status = msg.headers.get(_STATUS) if msg.headers else None
            if status is None:
                self._credit -= 1
                into.append(msg)
            elif status != "100":
                self._credit = 0
                if status != "408":
                    self._trouble = f"{status} {(msg.headers or {}).get('Description', '')}".strip()
        self._arrival.clear()

    async def _wait_for_arrivals(self) -> None:
        """Wait until something arrives on the inbox or the open request should have ended."""
        if self._arrived:
            return
        loop = asyncio.get_running_loop()
        left = self._expires_at + _PULL_GRACE_SECONDS - loop.time()
        if left > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrival.wait(), timeout=left)
        if not self._arrived and loop.time() >= self._expires_at + _PULL_GRACE_SECONDS:
            self._credit = 0  # its end never came: lost with a server that went away

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

    async def _handle_waiting(self, waiting: deque[Msg]) -> None:
        """Handle the messages held here in order, taking in those that arrive meanwhile, and keep every one still
        waiting its turn from reaching ack_wait."""
        loop = asyncio.get_running_loop()
        marked = loop.time()
        while True:
            self._take_arrived(waiting)
            if not waiting:
                return
            if loop.time() - marked > self._refresh_every:
                for msg in waiting:
                    with contextlib.suppress(Exception):
                        await msg.in_progress()
                marked = loop.time()
            await self.handle(waiting.popleft())

    async def run(self) -> None:
        """Consume until cancelled; subscription failures are retried."""
        sub: Subscription | None = None
        waiting: deque[Msg] = deque()
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    if self._trouble is not None:
                        trouble, self._trouble = self._trouble, None
                        raise RuntimeError(f"JetStream ended the pull request: {trouble}")
                    if sub is None:
                        sub = await self._subscribe()
                    if self._credit <= 0 or loop.time() >= self._expires_at + _PULL_GRACE_SECONDS:
                        await self._request()
                    await self._wait_for_arrivals()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s: pulling failed, retrying", self.name)
                    if sub is not None:
                        with contextlib.suppress(Exception):
                            await sub.unsubscribe()
                    sub = None
                    await asyncio.sleep(self._retry_delay)
                    continue
                await self._handle_waiting(waiting)
        finally:
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
