"""The input checks the use cases run themselves, so they hold whoever calls; each names the offending request
field (DESIGN.md §4.6). The servicer's own request checks are checkout/service/validation.py."""

from __future__ import annotations

import re

from infra.errors import InvalidArgument
from infra.validation import check_sku, check_text

__all__ = [
    "validate_notes",
    "validate_payment_method",
    "validate_quantity",
    "validate_sku",
]

_TOKEN = re.compile(r"^tok_[A-Za-z0-9]+$")
# 12-19 digits, possibly grouped by spaces or dashes: what a primary account number looks like.
_CARD_NUMBER = re.compile(r"^(?:\d[ -]?){11,18}\d$")
_TOKEN_MAX = 255


def validate_sku(sku: str, field: str = "sku") -> str:
    """The catalog's sku rule (infra.validation.check_sku), so a sku pricing would refuse is refused here by
    the request's own field name rather than by pricing's."""
    sku = (sku or "").strip()
    if not sku:
        raise InvalidArgument(field, "is required")
    return check_sku(field, sku)


def validate_quantity(quantity: int, maximum: int, field: str = "quantity") -> int:
    if not 1 <= quantity <= maximum:
        raise InvalidArgument(field, f"must be between 1 and {maximum}")
    return quantity


def validate_notes(notes: str, maximum: int, field: str = "notes") -> str:
    """Free text for the order: it may span lines, but holds no other control character."""
    return check_text(field, notes, max_length=maximum, multiline=True)


def validate_payment_method(method: str, field: str = "payment_method") -> str:
    """A provider token or "cod"; a card number is refused so it is never stored (PCI scope)."""
    method = method.strip()
    if len(method) > _TOKEN_MAX:
        raise InvalidArgument(field, f"must be at most {_TOKEN_MAX} characters")
    if method == "cod" or _TOKEN.fullmatch(method):
        return method
    if _CARD_NUMBER.fullmatch(method):
        raise InvalidArgument(field, "send a provider token, never a card number")
    raise InvalidArgument(field, 'must be "cod" or a provider token like tok_visa')
