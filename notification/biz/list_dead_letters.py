"""ListDeadLetters (admin): the messages that could not be sent, for an operator to see and replay."""

from __future__ import annotations

from notification.biz.ports import UnitOfWork
from notification.model.message import SentMessage

__all__ = ["ListDeadLetters"]


class ListDeadLetters:
    """The dead letters, most recently buried first; recipients masked as in ListMessages."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, limit: int) -> list[SentMessage]:
        async with self._uow.read() as tx:
            return await tx.messages.list_dead(limit)
