"""ListMessages (admin): what customers were told."""

from __future__ import annotations

from notification.biz.ports import UnitOfWork
from notification.model.message import SentMessage

__all__ = ["ListMessages"]


class ListMessages:
    """The newest messages first (of one order, if asked); a recipient only ever leaves masked, so an operator
    sees whom a message went to and not the address."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, limit: int, order_id: str = "") -> list[SentMessage]:
        async with self._uow.read() as tx:
            return await tx.messages.list_messages(limit, order_id)
