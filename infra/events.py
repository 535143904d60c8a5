"""NATS JetStream: connection and the streams each service publishes to.

Streams are file-backed; the local stack runs nats-server with
``sync_interval: always`` so an acknowledged message survives a crash of the
server. Subjects are ``kassa.<service>.<EventType>``; the message id header
(``Nats-Msg-Id``) is the outbox event id, so JetStream drops a republish.
"""

from __future__ import annotations

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

__all__ = ["DUPLICATE_WINDOW_SECONDS", "STREAMS", "connect", "ensure_streams", "stream_for", "subject"]

# One stream per publishing service.
STREAMS: dict[str, str] = {
    "checkout": "KASSA_CHECKOUT",
    "order": "KASSA_ORDER",
    "payment": "KASSA_PAYMENT",
    "warehouse": "KASSA_WAREHOUSE",
    "promotion": "KASSA_PROMOTION",
}
DUPLICATE_WINDOW_SECONDS = 120


def subject(service: str, event_type: str) -> str:
    return f"kassa.{service}.{event_type}"


def stream_for(service: str) -> str:
    return STREAMS[service]


async def connect(url: str, name: str) -> tuple[NATS, JetStreamContext]:
    nc = await nats.connect(url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=1)
    return nc, nc.jetstream()


async def ensure_streams(js: JetStreamContext, services: list[str] | None = None) -> None:
    """Create (or update) the streams; idempotent, safe from several replicas."""
    for service in services or list(STREAMS):
        config = StreamConfig(
            name=STREAMS[service],
            subjects=[f"kassa.{service}.>"],
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            max_age=7 * 24 * 3600,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
        )
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)
