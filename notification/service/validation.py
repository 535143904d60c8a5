"""The admin requests' checks, before the use case is called; each refusal an InvalidArgument naming the field."""

from __future__ import annotations

from kernel.errors import InvalidArgument
from kernel.validation import check_text

__all__ = ["check_message_id", "check_order_id", "check_page_size"]

MAX_PAGE = 500
DEFAULT_PAGE = 50
_MAX_MESSAGE_ID = 300
_MAX_ORDER_ID = 64


def check_page_size(value: int) -> int:
    """The page size asked for, DEFAULT_PAGE when unset."""
    if value < 0 or value > MAX_PAGE:
        raise InvalidArgument("page_size", f"must be between 0 and {MAX_PAGE}")
    return value or DEFAULT_PAGE


def check_order_id(order_id: str) -> str:
    if len(order_id) > _MAX_ORDER_ID:
        raise InvalidArgument("order_id", f"must be at most {_MAX_ORDER_ID} characters")
    return order_id


def check_message_id(message_id: str) -> str:
    """Storable text (no NUL or control characters, which Postgres refuses), required, bounded; spaces around it
    removed."""
    return check_text("message_id", message_id.strip(), max_length=_MAX_MESSAGE_ID, required=True)
