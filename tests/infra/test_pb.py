"""The shared value objects and their plain protobuf conversions (kernel.address, infra.pb)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from infra.pb import (
    address_from_pb,
    address_to_pb,
    checked_datetime,
    money_from_pb,
    money_in_currency,
    money_to_pb,
    timestamp_to_pb,
)
from kassa.common.v1 import address_pb2, money_pb2
from kernel.address import Address
from kernel.errors import InvalidArgument
from kernel.money import Money
from kernel.validation import MAX_AMOUNT_MINOR

pytestmark = pytest.mark.unit

ADA = Address("Ada Lovelace", "1 Main Street", "Apt 2", "Newark", "NJ", "07102", "US", "+1 555 0100")


def test_money_round_trips() -> None:
    pb = money_to_pb(Money("JPY", 1200))
    assert pb == money_pb2.Money(currency_code="JPY", amount_minor=1200)
    assert money_from_pb(pb) == Money("JPY", 1200)


def test_money_from_an_unset_message_is_zero_in_the_default_currency() -> None:
    assert money_from_pb(money_pb2.Money()) == Money("", 0)
    assert money_from_pb(money_pb2.Money(), default_currency="EUR") == Money("EUR", 0)
    assert money_from_pb(money_pb2.Money(currency_code="USD", amount_minor=5), "EUR") == Money("USD", 5)


def test_address_round_trips_field_by_field_without_normalising() -> None:
    pb = address_to_pb(ADA)
    assert pb == address_pb2.Address(
        name="Ada Lovelace", line1="1 Main Street", line2="Apt 2", city="Newark", region="NJ",
        postal_code="07102", country_code="US", phone="+1 555 0100",
    )  # fmt: skip
    assert address_from_pb(pb) == ADA
    assert address_from_pb(address_pb2.Address(name=" x ")) == Address(name=" x ")


def test_no_address_and_no_timestamp_stay_unset() -> None:
    assert address_to_pb(None) is None
    assert timestamp_to_pb(None) is None


def test_timestamp_keeps_the_instant() -> None:
    at = datetime(2026, 3, 1, 12, 30, 5, 250000, tzinfo=UTC)
    assert timestamp_to_pb(at).ToDatetime(tzinfo=UTC) == at


def test_address_defaults_to_empty_strings_and_round_trips_through_a_dict() -> None:
    assert Address() == Address("", "", "", "", "", "", "", "")
    assert Address.from_dict(ADA.to_dict()) == ADA
    assert Address.from_dict(None) is None
    assert Address.from_dict({}) is None


def test_money_in_currency_refuses_amounts_no_payment_carries() -> None:
    ok = money_in_currency("amount", money_pb2.Money(currency_code="USD", amount_minor=MAX_AMOUNT_MINOR), "USD")
    assert ok.amount_minor == MAX_AMOUNT_MINOR
    for amount in (-1, MAX_AMOUNT_MINOR + 1, 2**63 - 1):
        with pytest.raises(InvalidArgument) as err:
            money_in_currency("lines[0].amount", money_pb2.Money(currency_code="USD", amount_minor=amount), "USD")
        assert err.value.field == "lines[0].amount.amount_minor"


def test_checked_datetime_refuses_what_timestamp_cannot_hold() -> None:
    assert checked_datetime("starts_at", Timestamp(seconds=0)) == datetime(1970, 1, 1, tzinfo=UTC)
    assert checked_datetime("starts_at", Timestamp(seconds=253_402_300_799, nanos=999_999_999)).year == 9999
    for bad in (Timestamp(seconds=2**62), Timestamp(seconds=-62_135_596_801), Timestamp(seconds=1, nanos=-1)):
        with pytest.raises(InvalidArgument) as err:
            checked_datetime("promotion.starts_at", bad)
        assert err.value.field == "promotion.starts_at"
