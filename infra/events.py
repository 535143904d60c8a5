"""NATS JetStream: connection and the streams each service publishes to.

Subjects are ``kassa.<service>.<EventType>``; the message id header (``Nats-Msg-Id``) is the outbox
event id, so JetStream drops a republish that arrives within the stream's duplicate window.

Durability (DESIGN.md §3, §4.5) rests on three settings, and a stream is only as durable as the
weakest of them:

* the server fsyncs before it acknowledges (``sync_interval: always``, a server setting: the local
  stack writes it, ``deploy/nats/nats-server.conf`` carries it for production), so a PubAck the
  outbox publisher received survives a crash of the server that sent it;
* each stream keeps ``KASSA_NATS_REPLICAS`` copies (default 1, the local stack's single server;
  production runs 3, so a PubAck means a majority holds the message and one node can be lost);
* ``duplicate_window`` (:data:`DUPLICATE_WINDOW_SECONDS`) is longer than the longest gap between two
  publishes of one outbox row: a lease that expired under a crashed publisher, plus one publish
  deadline and one idle poll. A republish inside the window is dropped by the broker; the
  publisher refuses settings that would outgrow it (``infra.outbox.OutboxPublisher``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

__all__ = [
    "DUPLICATE_WINDOW_SECONDS",
    "MAX_AGE_SECONDS",
    "REPLICAS_ENV",
    "STREAMS",
    "connect",
    "ensure_streams",
    "servers",
    "stream_config",
    "stream_for",
    "stream_replicas",
    "subject",
]

# One stream per publishing service.
STREAMS: dict[str, str] = {
    "checkout": "KASSA_CHECKOUT",
    "order": "KASSA_ORDER",
    "payment": "KASSA_PAYMENT",
    "warehouse": "KASSA_WAREHOUSE",
    "promotion": "KASSA_PROMOTION",
}

# The broker remembers each Nats-Msg-Id this long. It must outlast the outbox lease (60 s) plus one
# publish deadline (10 s) and one idle poll (at most 15 s): a publisher that crashed after its PubAck leaves
# the row to be reclaimed and sent again when the lease ends. Five minutes is over three times that, and
# also covers a publish that sat in a client's reconnect buffer through a short outage. The cost is
# the server's memory for the ids of five minutes of events; a copy that still slips past (a
# partition longer than this) is dropped by the consumers' inboxes.
DUPLICATE_WINDOW_SECONDS = 300
MAX_AGE_SECONDS = 7 * 24 * 3600

REPLICAS_ENV = "KASSA_NATS_REPLICAS"
_MAX_REPLICAS = 5  # JetStream's own limit


def subject(service: str, event_type: str) -> str:
    return f"kassa.{service}.{event_type}"


def stream_for(service: str) -> str:
    return STREAMS[service]


def stream_replicas(environ: Mapping[str, str] | None = None) -> int:
    """``KASSA_NATS_REPLICAS`` (default 1): how many servers keep each stream; 3 in production."""
    env = os.environ if environ is None else environ
    text = env.get(REPLICAS_ENV, "").strip() or "1"
    try:
        replicas = int(text)
    except ValueError:
        replicas = 0
    if not 1 <= replicas <= _MAX_REPLICAS:
        raise ValueError(f"{REPLICAS_ENV} must be an integer from 1 to {_MAX_REPLICAS}, got {text!r}")
    return replicas


def stream_config(
    service: str, *, replicas: int | None = None, duplicate_window: float = DUPLICATE_WINDOW_SECONDS
) -> StreamConfig:
    """The stream ``service`` publishes to; ``replicas`` defaults to :func:`stream_replicas`."""
    return StreamConfig(
        name=STREAMS[service],
        subjects=[f"kassa.{service}.>"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_age=MAX_AGE_SECONDS,
        num_replicas=stream_replicas() if replicas is None else replicas,
        duplicate_window=duplicate_window,
    )


def servers(url: str) -> list[str]:
    """``KASSA_NATS_URL`` as the servers to try: one URL, or a cluster's comma-separated ``nats://a:4222,nats://b:4222``
    (a client that starts while the first server is down connects to the next)."""
    return [part.strip() for part in url.split(",") if part.strip()]


async def connect(url: str, name: str) -> tuple[NATS, JetStreamContext]:
    nc = await nats.connect(servers(url), name=name, max_reconnect_attempts=-1, reconnect_time_wait=1)
    return nc, nc.jetstream()


async def ensure_streams(
    js: JetStreamContext,
    services: list[str] | None = None,
    *,
    replicas: int | None = None,
    duplicate_window: float = DUPLICATE_WINDOW_SECONDS,
) -> None:
    """Create (or update to these settings) the streams; idempotent, safe from several replicas.

    An existing stream is brought to the configured replica count and duplicate window (JetStream
    scales a clustered stream in place); a setting the server cannot honour (3 replicas on a single
    server) raises rather than leave a stream less durable than configured.
    """
    for service in services or list(STREAMS):
        config = stream_config(service, replicas=replicas, duplicate_window=duplicate_window)
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)
