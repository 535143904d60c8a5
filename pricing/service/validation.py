"""Request validation helpers: each refusal names the request field (DESIGN.md §4.6)."""

from __future__ import annotations

import re

from infra.errors import InvalidArgument
from infra.money import Money, validate_currency
from infra.pb import money_from_pb as plain_money_from_pb
from kassa.common.v1 import money_pb2

__all__ = ["SKU_PATTERN", "check_country", "check_currency", "check_sku", "money_from_pb"]

SKU_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def check_currency(field: str, code: str) -> str:
    problem = validate_currency(code)
    if problem:
        raise InvalidArgument(field, problem)
    return code


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


def money_from_pb(field: str, pb: money_pb2.Money, currency_code: str) -> Money:
    """A non-negative amount in the request's currency; an unset message is zero."""
    if pb.currency_code and pb.currency_code != currency_code:
        raise InvalidArgument(f"{field}.currency_code", f"must be {currency_code}, the request's currency")
    if not pb.currency_code and pb.amount_minor:
        raise InvalidArgument(f"{field}.currency_code", "is required")
    if pb.amount_minor < 0:
        raise InvalidArgument(f"{field}.amount_minor", "must not be negative")
    return plain_money_from_pb(pb, default_currency=currency_code)
