"""ListOrders: the caller's own orders, newest first, in keyset pages."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime

from kernel.caller import Caller
from kernel.errors import InvalidArgument, PermissionDenied
from order.biz.ports import PageCursor, UnitOfWork
from order.model.order import Order

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "ListOrders", "decode_page_token", "encode_page_token"]

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def encode_page_token(cursor: PageCursor) -> str:
    raw = json.dumps({"c": cursor.created_at.isoformat(), "i": cursor.order_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_page_token(token: str) -> PageCursor:
    """Refuse anything :func:`encode_page_token` did not produce, naming ``page_token``."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        created_at = datetime.fromisoformat(raw["c"])
        order_id = str(uuid.UUID(raw["i"]))
    except (binascii.Error, ValueError, TypeError, KeyError) as exc:
        raise InvalidArgument("page_token", "is not a token returned by ListOrders") from exc
    if created_at.tzinfo is None:
        raise InvalidArgument("page_token", "is not a token returned by ListOrders")
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
