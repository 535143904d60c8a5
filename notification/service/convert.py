"""Protobuf <- model for NotificationService's answers."""

from __future__ import annotations

from infra.pb import timestamp_to_pb
from kassa.notification.v1 import notification_service_pb2 as pb
from notification.model.message import MessageStatus, SentMessage

__all__ = ["message_to_pb"]

_STATUS_PB = {
    MessageStatus.SENDING: pb.MESSAGE_STATUS_SENDING,
    MessageStatus.SENT: pb.MESSAGE_STATUS_SENT,
    MessageStatus.DEAD: pb.MESSAGE_STATUS_DEAD,
}


def message_to_pb(m: SentMessage) -> pb.Message:
    return pb.Message(
        message_id=m.message_id,
        event_id=m.event_id,
        event_type=m.event_type,
        order_id=m.order_id,
        kind=m.kind,
        channel=m.channel,
        recipient=m.recipient_masked,
        subject=m.subject,
        status=_STATUS_PB[m.status],
        attempts=m.attempts,
        last_error=m.last_error,
        created_at=timestamp_to_pb(m.created_at),
        sent_at=timestamp_to_pb(m.sent_at),
    )
