"""ListOrders: the caller's own orders, newest first, in keyset pages."""

from __future__ import annotations

import uuid

from kernel.caller import Caller
from kernel.errors import InvalidArgument, PermissionDenied
from kernel.paging import decode_keyset_token, keyset_token
from order.biz.ports import PageCursor, UnitOfWork
from order.model.order import Order

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "ListOrders", "decode_page_token", "encode_page_token"]

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def encode_page_token(cursor: PageCursor) -> str:
    return keyset_token(cursor.created_at, cursor.order_id)


def decode_page_token(token: str) -> PageCursor:
    """Refuse anything :func:`encode_page_token` did not produce, naming ``page_token`` (kernel.paging)."""
    created_at, order_id = decode_keyset_token(token, lambda value: str(uuid.UUID(str(value))))
    return PageCursor(created_at=created_at, order_id=order_id)


class ListOrders:
    """Ownership (DESIGN.md §2): a customer's list is always their own orders, never those of a customer id taken
    from the request; only a privileged caller (an operator's console, support tooling) names another customer.
    Invariant 6: page_size and page_token are validated before querying."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(
        self, caller: Caller, page_size: int, page_token: str, customer_id: str = ""
    ) -> tuple[list[Order], str]:
        if customer_id and not caller.owns(customer_id):
            raise PermissionDenied("only an admin lists another customer's orders")
        if page_size == 0:
            page_size = DEFAULT_PAGE_SIZE
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidArgument("page_size", f"must be between 1 and {MAX_PAGE_SIZE}")
        after = decode_page_token(page_token) if page_token else None
        async with self._uow.read() as tx:
            orders = await tx.orders.list_for_customer(customer_id or caller.subject, page_size + 1, after)
        if len(orders) <= page_size:
            return orders, ""
        page = orders[:page_size]
        last = page[-1]
        return page, encode_page_token(PageCursor(created_at=last.created_at, order_id=last.order_id))
