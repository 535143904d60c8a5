"""The field rules every service applies the same way, each written once. Pure, no I/O; biz may import it.

Why: a value that breaks storage must be refused where the request is validated, with INVALID_ARGUMENT
naming the field, before anything is written (DESIGN.md §4.6). Postgres refuses a NUL in ``text`` and
a ``\\u0000`` in ``jsonb`` (a 500 if it gets that far), a ``bigint`` holds at most 2**63 - 1, and a
sum of many large amounts passes that long before any one of them does.

* Text: no control characters (Unicode category Cc: NUL, the other C0 codes, DEL, C1), no line or
  paragraph separators, except tab, line feed and carriage return in free text that may span lines
  (``multiline=True``: notes, reasons); a length cap on every field.
* Amounts: minor units between 0 (or 1) and :data:`MAX_AMOUNT_MINOR`, the most one payment can carry;
  any total Kassa computes from capped amounts and capped counts stays far inside int64.
* Counts: a repeated field holds at most a stated number of entries.
* Fields several services name: sku, country code, email, postal address, UUID, payment method (never a card
  number), shipping method; and an operator report's window. Where two services' copies disagreed, the rule
  here is the one checkout (the mesh's entry point) applied, so nothing it lets through is refused later.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Sized
from datetime import UTC, datetime, timedelta

from kernel.address import Address
from kernel.delivery import SHIPPING_METHODS
from kernel.errors import InvalidArgument

__all__ = [
    "CARD_NUMBER_MESSAGE",
    "MAX_AMOUNT_MINOR",
    "MAX_EMAIL_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_PAYMENT_METHOD_LENGTH",
    "MAX_TEXT_LENGTH",
    "SKU_PATTERN",
    "check_address",
    "check_amount",
    "check_count",
    "check_country",
    "check_email",
    "check_payment_method",
    "check_shipping_method",
    "check_sku",
    "check_text",
    "check_uuid",
    "check_window",
    "text_problem",
]

# The largest amount in minor units one payment may carry (999,999,999.99 in a two-decimal currency).
MAX_AMOUNT_MINOR = 99_999_999_999
MAX_TEXT_LENGTH = 200
MAX_ID_LENGTH = 255
SKU_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
# RFC 5321's longest path; a local part of at most 64 characters and a domain of dot-separated DNS labels.
MAX_EMAIL_LENGTH = 254
_EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+")
# A payment method is "cod" or a provider's token; 12-19 digits, possibly grouped by spaces or dashes, is what a
# primary account number looks like, and is refused so it is never stored (PCI scope).
MAX_PAYMENT_METHOD_LENGTH = 255
CARD_NUMBER_MESSAGE = "send a provider token, never a card number"
_TOKEN = re.compile(r"tok_[A-Za-z0-9]+")
_CARD_NUMBER = re.compile(r"(?:\d[ -]?){11,18}\d")
# ISO 3166-1 alpha-2, upper case.
_COUNTRY = re.compile(r"[A-Z]{2}")

_MULTILINE_ALLOWED = frozenset("\t\n\r")
# Cheap pre-check: most text is printable ASCII and needs no per-character look-up.
_PLAIN = re.compile(r"[\x20-\x7e]*")


def text_problem(value: str, *, multiline: bool = False) -> str | None:
    """Why ``value`` can't be stored as request text, or None."""
    if _PLAIN.fullmatch(value):
        return None
    for ch in value:
        category = unicodedata.category(ch)
        if category == "Cc" and not (multiline and ch in _MULTILINE_ALLOWED):
            return f"must not contain control characters (found U+{ord(ch):04X})"
        if category in ("Zl", "Zp") and not multiline:
            return f"must be a single line (found U+{ord(ch):04X})"
        if category == "Cs":
            return "must be valid Unicode text"
    return None


def check_text(
    field: str, value: str, *, max_length: int = MAX_TEXT_LENGTH, required: bool = False, multiline: bool = False
) -> str:
    """``value`` unchanged if it is storable text of at most ``max_length`` characters, else InvalidArgument."""
    if required and not value.strip():
        raise InvalidArgument(field, "is required")
    if len(value) > max_length:
        raise InvalidArgument(field, f"must be at most {max_length} characters")
    problem = text_problem(value, multiline=multiline)
    if problem is not None:
        raise InvalidArgument(field, problem)
    return value


def check_sku(field: str, sku: str) -> str:
    """A catalog sku: 1-64 of A-Z a-z 0-9 . _ - (the pricing service's rule, which every other service shares)."""
    if not SKU_PATTERN.fullmatch(sku):
        raise InvalidArgument(field, "must be 1-64 characters of A-Z a-z 0-9 . _ -")
    return sku


def check_country(field: str, code: str) -> str:
    """An ISO 3166-1 alpha-2 country code in upper case, like US."""
    if not _COUNTRY.fullmatch(code):
        raise InvalidArgument(field, "must be an ISO 3166-1 alpha-2 code in upper case, like US")
    return code


def check_email(field: str, email: str) -> str:
    """An email address like name@example.com (surrounding spaces removed), at most MAX_EMAIL_LENGTH characters."""
    email = email.strip()
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(email):
        raise InvalidArgument(field, "must be an email address like name@example.com")
    return check_text(field, email, max_length=MAX_EMAIL_LENGTH)


def check_payment_method(field: str, method: str) -> str:
    """``"cod"`` or a provider token like ``tok_visa`` (surrounding spaces removed); a card number is refused."""
    method = method.strip()
    if len(method) > MAX_PAYMENT_METHOD_LENGTH:
        raise InvalidArgument(field, f"must be at most {MAX_PAYMENT_METHOD_LENGTH} characters")
    if method == "cod" or _TOKEN.fullmatch(method):
        return method
    if _CARD_NUMBER.fullmatch(method):
        raise InvalidArgument(field, CARD_NUMBER_MESSAGE)
    raise InvalidArgument(field, 'must be "cod" or a provider token like tok_visa')


def check_shipping_method(field: str, method: str) -> str:
    """One of :data:`kernel.delivery.SHIPPING_METHODS`, as written (callers normalise case first if they allow it)."""
    if method not in SHIPPING_METHODS:
        raise InvalidArgument(field, f"must be one of {', '.join(SHIPPING_METHODS)}")
    return method


def check_uuid(field: str, value: str) -> str:
    """A UUID, returned in its canonical lower-case hyphenated form."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument(field, "must be a UUID") from None


_ADDRESS_REQUIRED = ("name", "line1", "city", "postal_code")
_ADDRESS_OPTIONAL = ("line2", "region", "phone")


def check_address(field: str, address: Address, *, max_length: int = MAX_TEXT_LENGTH) -> Address:
    """A postal address a parcel can be sent to: name, line1, city and postal code present, every part storable
    single-line text of at most ``max_length`` characters, an upper-case ISO country code. Fields are named
    ``<field>.<part>``."""
    for name in _ADDRESS_REQUIRED:
        check_text(f"{field}.{name}", getattr(address, name), max_length=max_length, required=True)
    for name in _ADDRESS_OPTIONAL:
        check_text(f"{field}.{name}", getattr(address, name), max_length=max_length)
    check_country(f"{field}.country_code", address.country_code)
    return address


def check_amount(field: str, amount: int, *, positive: bool = False, maximum: int = MAX_AMOUNT_MINOR) -> int:
    """An amount in minor units: not negative (positive if asked), at most ``maximum``."""
    if amount < 0 or (positive and amount == 0):
        raise InvalidArgument(field, "must be positive" if positive else "must not be negative")
    if amount > maximum:
        raise InvalidArgument(field, f"must be at most {maximum:,} minor units")
    return amount


def check_count(field: str, items: Sized, maximum: int, *, required: bool = False) -> None:
    """A repeated field with at most ``maximum`` entries (at least one if ``required``)."""
    if required and len(items) == 0:
        raise InvalidArgument(field, "must not be empty")
    if len(items) > maximum:
        raise InvalidArgument(field, f"must have at most {maximum} entries")


# The window an operator's report covers (the funnel, payment failure rates): the last hour by default, a month at most.
DEFAULT_WINDOW = timedelta(hours=1)
MAX_WINDOW = timedelta(days=31)


def check_window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """(start, end) of a report's window: ``end`` now and ``start`` an hour before when unset; start before end,
    at most MAX_WINDOW apart (InvalidArgument naming ``start_time`` otherwise)."""
    end = end or datetime.now(UTC)
    start = start or end - DEFAULT_WINDOW
    if start >= end:
        raise InvalidArgument("start_time", "must be before end_time")
    if end - start > MAX_WINDOW:
        raise InvalidArgument("start_time", "the window is at most 31 days")
    return start, end
