"""Plain protobuf <-> domain conversions of the shared ``kassa.common.v1`` types and timestamps.

The plain converters check nothing. ``checked_currency``, ``money_in_currency`` and
``checked_datetime`` are the validating variants for request input: they refuse a bad currency,
amount or timestamp with an ``InvalidArgument`` naming the request field. Only ``service/`` and
``adapter/`` code imports this module (it pulls in the generated code).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import overload

from google.protobuf.timestamp_pb2 import Timestamp

from kassa.common.v1 import address_pb2, delivery_pb2, money_pb2
from kernel.address import Address
from kernel.delivery import DeliveryWindow
from kernel.errors import InvalidArgument
from kernel.money import Money, validate_currency
from kernel.validation import check_amount

__all__ = [
    "address_from_pb",
    "address_to_pb",
    "checked_currency",
    "checked_datetime",
    "money_from_pb",
    "money_in_currency",
    "money_to_pb",
    "timestamp_to_pb",
    "window_from_pb",
    "window_to_pb",
]


def money_to_pb(money: Money) -> money_pb2.Money:
    return money_pb2.Money(currency_code=money.currency_code, amount_minor=money.amount_minor)


def money_from_pb(pb: money_pb2.Money, default_currency: str = "") -> Money:
    """``default_currency`` stands in for an empty ``currency_code`` (an unset message is zero in it)."""
    return Money(pb.currency_code or default_currency, pb.amount_minor)


@overload
def address_to_pb(address: Address) -> address_pb2.Address: ...
@overload
def address_to_pb(address: None) -> None: ...
@overload
def address_to_pb(address: Address | None) -> address_pb2.Address | None: ...
def address_to_pb(address: Address | None) -> address_pb2.Address | None:
    """None stays None (an unset message field)."""
    if address is None:
        return None
    return address_pb2.Address(
        name=address.name,
        line1=address.line1,
        line2=address.line2,
        city=address.city,
        region=address.region,
        postal_code=address.postal_code,
        country_code=address.country_code,
        phone=address.phone,
    )


def address_from_pb(pb: address_pb2.Address) -> Address:
    """Field by field, as is; whether the message was set at all is the caller's question (``HasField``)."""
    return Address(
        name=pb.name,
        line1=pb.line1,
        line2=pb.line2,
        city=pb.city,
        region=pb.region,
        postal_code=pb.postal_code,
        country_code=pb.country_code,
        phone=pb.phone,
    )


@overload
def timestamp_to_pb(value: datetime) -> Timestamp: ...
@overload
def timestamp_to_pb(value: None) -> None: ...
@overload
def timestamp_to_pb(value: datetime | None) -> Timestamp | None: ...
def timestamp_to_pb(value: datetime | None) -> Timestamp | None:
    """None stays None (an unset message field); a naive datetime is taken as UTC (``FromDatetime``)."""
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def checked_currency(field: str, code: str) -> str:
    """``code`` if it is a supported ISO 4217 code, else InvalidArgument naming ``field``."""
    problem = validate_currency(code)
    if problem:
        raise InvalidArgument(field, problem)
    return code


def money_in_currency(field: str, pb: money_pb2.Money, currency_code: str) -> Money:
    """An amount from 0 to MAX_AMOUNT_MINOR in the request's currency; an unset message is zero."""
    if pb.currency_code and pb.currency_code != currency_code:
        raise InvalidArgument(f"{field}.currency_code", f"must be {currency_code}, the request's currency")
    if not pb.currency_code and pb.amount_minor:
        raise InvalidArgument(f"{field}.currency_code", "is required")
    check_amount(f"{field}.amount_minor", pb.amount_minor)
    return money_from_pb(pb, default_currency=currency_code)


# Timestamp's own range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z, the range datetime holds.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799


def checked_datetime(field: str, ts: Timestamp) -> datetime:
    """The aware UTC datetime of a request Timestamp; one outside the Timestamp range (which ``ToDatetime``
    raises ValueError for) is InvalidArgument naming ``field``."""
    if not _MIN_SECONDS <= ts.seconds <= _MAX_SECONDS or not 0 <= ts.nanos <= 999_999_999:
        raise InvalidArgument(field, "must be a timestamp between 0001-01-01 and 9999-12-31")
    return ts.ToDatetime(tzinfo=UTC)


def window_to_pb(window: DeliveryWindow | None, start: date | None = None) -> delivery_pb2.DeliveryWindow | None:
    """Business days, and with ``start`` the dates they fall on counted from it; None stays None."""
    if window is None:
        return None
    pb = delivery_pb2.DeliveryWindow(
        min_business_days=window.min_business_days, max_business_days=window.max_business_days
    )
    if start is not None:
        earliest, latest = window.dates_from(start)
        pb.earliest_date, pb.latest_date = earliest.isoformat(), latest.isoformat()
    return pb


def window_from_pb(pb: delivery_pb2.DeliveryWindow) -> DeliveryWindow | None:
    """The business days of a window another service sent; None for one that makes no sense."""
    try:
        return DeliveryWindow(pb.min_business_days, pb.max_business_days)
    except ValueError:
        return None
