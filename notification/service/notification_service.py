"""kassa.notification.v1.NotificationService: what customers were told, for admins; a dead letter replayed."""

from __future__ import annotations

import grpc

from infra.auth import require_admin
from kassa.notification.v1 import notification_service_pb2 as pb
from kassa.notification.v1 import notification_service_pb2_grpc as pb_grpc
from notification.biz.list_dead_letters import ListDeadLetters
from notification.biz.list_messages import ListMessages
from notification.biz.replay import ReplayDeadLetter
from notification.service.convert import message_to_pb
from notification.service.validation import check_message_id, check_order_id, check_page_size

__all__ = ["NotificationServiceServicer"]


class NotificationServiceServicer(pb_grpc.NotificationServiceServicer):
    def __init__(self, messages: ListMessages, dead_letters: ListDeadLetters, replay: ReplayDeadLetter) -> None:
        self._messages = messages
        self._dead_letters = dead_letters
        self._replay = replay

    async def ListMessages(
        self, request: pb.ListMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMessagesResponse:
        require_admin()
        limit = check_page_size(request.page_size)
        found = await self._messages(limit, check_order_id(request.order_id))
        return pb.ListMessagesResponse(messages=[message_to_pb(m) for m in found])

    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDeadLettersResponse:
        require_admin()
        found = await self._dead_letters(check_page_size(request.page_size))
        return pb.ListDeadLettersResponse(messages=[message_to_pb(m) for m in found])

    async def ReplayDeadLetter(
        self, request: pb.ReplayDeadLetterRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplayDeadLetterResponse:
        require_admin()
        message_id = check_message_id(request.message_id)
        return pb.ReplayDeadLetterResponse(message=message_to_pb(await self._replay(message_id)))
