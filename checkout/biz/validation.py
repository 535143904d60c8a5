"""Input checks shared by the use cases; each names the offending request field (DESIGN.md §4.6)."""

from __future__ import annotations

import re
import uuid

from checkout.model.catalog import Address
from infra.errors import InvalidArgument

__all__ = [
    "validate_address",
    "validate_email",
    "validate_id",
    "validate_payment_method",
    "validate_quantity",
    "validate_sku",
]

_EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_TOKEN = re.compile(r"^tok_[A-Za-z0-9]+$")
# 12-19 digits, possibly grouped by spaces or dashes: what a primary account number looks like.
_CARD_NUMBER = re.compile(r"^(?:\d[ -]?){11,18}\d$")
_SKU_MAX = 64


def validate_id(field: str, value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument(field, "must be a UUID") from None


def validate_sku(sku: str, field: str = "sku") -> str:
    sku = (sku or "").strip()
    if not sku:
        raise InvalidArgument(field, "is required")
    if len(sku) > _SKU_MAX:
        raise InvalidArgument(field, f"must be at most {_SKU_MAX} characters")
    return sku


def validate_quantity(quantity: int, maximum: int, field: str = "quantity") -> int:
    if not 1 <= quantity <= maximum:
        raise InvalidArgument(field, f"must be between 1 and {maximum}")
    return quantity


def validate_email(email: str, field: str = "email") -> str:
    email = email.strip()
    if len(email) > 254 or not _EMAIL.match(email):
        raise InvalidArgument(field, "must be an email address like name@example.com")
    return email


def validate_address(address: Address, field: str) -> Address:
    for name in ("name", "line1", "city", "postal_code", "country_code"):
        if not getattr(address, name).strip():
            raise InvalidArgument(f"{field}.{name}", "is required")
    for name in ("name", "line1", "line2", "city", "region", "postal_code", "phone"):
        if len(getattr(address, name)) > 200:
            raise InvalidArgument(f"{field}.{name}", "must be at most 200 characters")
    if not _COUNTRY.match(address.country_code):
        raise InvalidArgument(f"{field}.country_code", "must be an ISO 3166-1 alpha-2 code in upper case, like US")
    return address


def validate_payment_method(method: str, field: str = "payment_method") -> str:
    """A provider token or "cod"; a card number is refused so it is never stored (PCI scope)."""
    method = method.strip()
    if method == "cod" or _TOKEN.match(method):
        return method
    if _CARD_NUMBER.match(method):
        raise InvalidArgument(field, "send a provider token, never a card number")
    raise InvalidArgument(field, 'must be "cod" or a provider token like tok_visa')
