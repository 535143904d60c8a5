"""Request validation helpers: each refusal names the request field (DESIGN.md §4.6)."""

from __future__ import annotations

import re

from infra.errors import InvalidArgument

__all__ = ["SKU_PATTERN", "check_country", "check_sku"]

SKU_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def check_country(field: str, code: str) -> str:
    if not code:
        raise InvalidArgument(field, "is required")
    if not _COUNTRY.match(code):
        raise InvalidArgument(field, "must be an upper-case ISO 3166-1 alpha-2 code")
    return code


def check_sku(field: str, sku: str) -> str:
    if not SKU_PATTERN.match(sku):
        raise InvalidArgument(field, "must be 1-64 characters of A-Z a-z 0-9 . _ -")
    return sku
