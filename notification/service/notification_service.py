"""kassa.notification.v1.NotificationService: what customers were told, for admins; a dead letter replayed."""

from __future__ import annotations

import grpc

from infra.auth import require_admin
from infra.errors import InvalidArgument
from infra.pb import timestamp_to_pb
from infra.validation import check_text
from kassa.notification.v1 import notification_service_pb2 as pb
from kassa.notification.v1 import notification_service_pb2_grpc as pb_grpc
from notification.biz.list_dead_letters import ListDeadLetters
from notification.biz.list_messages import ListMessages
from notification.biz.replay import ReplayDeadLetter
from notification.model.message import MessageStatus, SentMessage

__all__ = ["NotificationServiceServicer"]

_MAX_PAGE = 500
_MAX_MESSAGE_ID = 300
_DEFAULT_PAGE = 50
_STATUS_PB = {
    MessageStatus.SENDING: pb.MESSAGE_STATUS_SENDING,
    MessageStatus.SENT: pb.MESSAGE_STATUS_SENT,
    MessageStatus.DEAD: pb.MESSAGE_STATUS_DEAD,
}


def _page_size(value: int) -> int:
    if value < 0 or value > _MAX_PAGE:
        raise InvalidArgument("page_size", f"must be between 0 and {_MAX_PAGE}")
    return value or _DEFAULT_PAGE


def _message_pb(m: SentMessage) -> pb.Message:
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


class NotificationServiceServicer(pb_grpc.NotificationServiceServicer):
    def __init__(self, messages: ListMessages, dead_letters: ListDeadLetters, replay: ReplayDeadLetter) -> None:
        self._messages = messages
        self._dead_letters = dead_letters
        self._replay = replay

    async def ListMessages(
        self, request: pb.ListMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMessagesResponse:
        require_admin()
        limit = _page_size(request.page_size)
        if len(request.order_id) > 64:
            raise InvalidArgument("order_id", "must be at most 64 characters")
        found = await self._messages(limit, request.order_id)
        return pb.ListMessagesResponse(messages=[_message_pb(m) for m in found])

    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDeadLettersResponse:
        require_admin()
        found = await self._dead_letters(_page_size(request.page_size))
        return pb.ListDeadLettersResponse(messages=[_message_pb(m) for m in found])

    async def ReplayDeadLetter(
        self, request: pb.ReplayDeadLetterRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplayDeadLetterResponse:
        require_admin()
        # Storable text (no NUL or control characters, which Postgres refuses), required, bounded.
        message_id = check_text("message_id", request.message_id.strip(), max_length=_MAX_MESSAGE_ID, required=True)
        return pb.ReplayDeadLetterResponse(message=_message_pb(await self._replay(message_id)))
