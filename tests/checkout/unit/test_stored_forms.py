"""The stored (JSON) forms of checkout's values are spelled out field by field for speed: each must still hold every
field, as dataclasses.asdict would give it, and read back to the same value."""

from __future__ import annotations

import dataclasses

import pytest

from checkout.model.session import ConfirmError, ConfirmResult, SessionLine
from kernel.address import Address

pytestmark = pytest.mark.unit

_ORIGIN = Address("Depot", "1 Dock Rd", "Unit 4", "Leeds", "West Yorkshire", "LS1 1AA", "GB", "+44 113 000")


def test_an_address_is_stored_with_every_field_and_reads_back() -> None:
    assert _ORIGIN.to_dict() == dataclasses.asdict(_ORIGIN)
    assert Address.from_dict(_ORIGIN.to_dict()) == _ORIGIN


def test_a_session_line_is_stored_with_every_field_and_reads_back() -> None:
    line = SessionLine("SKU-1", "Kettle", 2, 2599, "wh-leeds", _ORIGIN, 1200, "reduced", "kitchen", "Brew")
    assert line.to_dict() == dataclasses.asdict(line)
    assert SessionLine.from_dict(line.to_dict()) == line


def test_a_confirm_result_is_stored_with_every_field_and_reads_back() -> None:
    result = ConfirmResult("s-1", "o-1", "CONFIRMED", "CAPTURED", "https://pay.test/3ds", "EUR", 5198)
    assert result.to_dict() == dataclasses.asdict(result)
    assert ConfirmResult.from_dict(result.to_dict()) == result


def test_a_confirm_error_is_stored_with_every_field_and_its_metadata_copied() -> None:
    error = ConfirmError("FailedPrecondition", "PAYMENT_DECLINED", "declined", {"decline_code": "card_declined"})
    stored = error.to_dict()
    assert stored == dataclasses.asdict(error)
    assert ConfirmError.from_dict(stored) == error
    stored["metadata"]["decline_code"] = "changed"
    assert error.metadata == {"decline_code": "card_declined"}
