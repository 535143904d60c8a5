"""kernel.validation: the field rules every service shares (text, sku, amount, count, payment method, country,
email, UUID, address)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernel.address import Address
from kernel.errors import InvalidArgument
from kernel.validation import (
    CARD_NUMBER_MESSAGE,
    MAX_AMOUNT_MINOR,
    check_address,
    check_amount,
    check_count,
    check_country,
    check_email,
    check_payment_method,
    check_sku,
    check_text,
    check_uuid,
    text_problem,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("value", ["a\x00b", "\x01", "x\x1b[31m", "\x7f", "\x85", "\x9f", "line\nbreak", "tab\there"])
def test_control_characters_are_refused_naming_the_field(value: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        check_text("shipping_address.name", value)
    assert err.value.field == "shipping_address.name"
    assert "control characters" in err.value.message


@pytest.mark.parametrize("value", ["a\u2028b", "a\u2029b"])
def test_line_separators_are_refused_in_single_line_text(value: str) -> None:
    assert text_problem(value) is not None
    assert text_problem(value, multiline=True) is None


def test_free_text_may_span_lines_but_holds_no_nul() -> None:
    assert check_text("notes", "ring twice\r\nthen\tknock", multiline=True) == "ring twice\r\nthen\tknock"
    with pytest.raises(InvalidArgument):
        check_text("notes", "ring\x00twice", multiline=True)


@pytest.mark.parametrize("value", ["Ada Lovelace", "Zoë Ünal-Øster", "東京都千代田区", "José 😀", "", 'O\'Brien "Jr"'])
def test_ordinary_text_passes_unchanged(value: str) -> None:
    assert check_text("name", value) == value


def test_length_cap_and_required() -> None:
    assert check_text("city", "x" * 200) == "x" * 200
    with pytest.raises(InvalidArgument, match="at most 200"):
        check_text("city", "x" * 201)
    with pytest.raises(InvalidArgument, match="is required"):
        check_text("city", "  ", required=True)


@given(st.text())
def test_text_problem_agrees_with_unicode_categories(value: str) -> None:
    bad = any(ch < " " or "\x7f" <= ch <= "\x9f" or ch in "\u2028\u2029" for ch in value)
    assert (text_problem(value) is not None) == bad


def test_skus() -> None:
    assert check_sku("lines[0].sku", "KB-001") == "KB-001"
    for bad in ("", "a b", "KB\x00", "KB-001\n", "é", "x" * 65):
        with pytest.raises(InvalidArgument) as err:
            check_sku("lines[0].sku", bad)
        assert err.value.field == "lines[0].sku"


def test_amounts() -> None:
    assert check_amount("amount.amount_minor", 0) == 0
    assert check_amount("amount.amount_minor", MAX_AMOUNT_MINOR) == MAX_AMOUNT_MINOR
    for bad, positive in ((-1, False), (0, True), (MAX_AMOUNT_MINOR + 1, False), (2**63 - 1, False)):
        with pytest.raises(InvalidArgument) as err:
            check_amount("amount.amount_minor", bad, positive=positive)
        assert err.value.field == "amount.amount_minor"


def test_counts() -> None:
    check_count("items", [1, 2], 2)
    with pytest.raises(InvalidArgument, match="at most 2 entries"):
        check_count("items", [1, 2, 3], 2)
    with pytest.raises(InvalidArgument, match="must not be empty"):
        check_count("items", [], 2, required=True)


@pytest.mark.parametrize("value", ["4242424242424242", "4242 4242 4242 4242", "4000-0566-5566-5556", "378282246310005"])
def test_card_numbers_are_refused_as_payment_methods(value: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        check_payment_method("payment_method", value)
    assert (err.value.field, err.value.message) == ("payment_method", f"payment_method: {CARD_NUMBER_MESSAGE}")


@pytest.mark.parametrize("value", ["tok_visa", "tok_threeDSecure", "cod", "  tok_visa "])
def test_tokens_and_cod_are_accepted_as_payment_methods(value: str) -> None:
    assert check_payment_method("payment_method", value) == value.strip()


@pytest.mark.parametrize("value", ["visa", "COD", "pm_123", "tok_", "tok_a-b", "tok_visa\x00", "tok_" + "x" * 300])
def test_other_payment_methods_are_refused(value: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        check_payment_method("payment_method", value)
    assert err.value.field == "payment_method"
    assert CARD_NUMBER_MESSAGE not in err.value.message


@pytest.mark.parametrize("code", ["us", "USA", "U", "", "U1", "US\n"])
def test_country_codes_are_two_upper_case_letters(code: str) -> None:
    assert check_country("c", "US") == "US"
    with pytest.raises(InvalidArgument) as err:
        check_country("shipping_address.country_code", code)
    assert err.value.field == "shipping_address.country_code"


@pytest.mark.parametrize(
    "email", ["a@b", "no-at.example.com", "a b@example.com", "x" * 65 + "@example.com", "a@-x.com"]
)
def test_emails_that_are_not_addresses_are_refused(email: str) -> None:
    assert check_email("email", "  name@example.com ") == "name@example.com"
    with pytest.raises(InvalidArgument) as err:
        check_email("email", email)
    assert err.value.field == "email"


def test_uuids_come_back_canonical_and_anything_else_is_refused() -> None:
    assert check_uuid("id", "12345678-1234-1234-1234-1234567890AB") == "12345678-1234-1234-1234-1234567890ab"
    with pytest.raises(InvalidArgument) as err:
        check_uuid("session_id", "not-a-uuid")
    assert (err.value.field, err.value.message) == ("session_id", "session_id: must be a UUID")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": " "}, "shipping_address.name"),
        ({"postal_code": ""}, "shipping_address.postal_code"),
        ({"line2": "a\x00"}, "shipping_address.line2"),
        ({"city": "c" * 201}, "shipping_address.city"),
        ({"country_code": "us"}, "shipping_address.country_code"),
    ],
)
def test_addresses_name_the_part_that_is_wrong(changes: dict[str, str], field: str) -> None:
    good = {"name": "Ada", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country_code": "US"}
    assert check_address("shipping_address", Address(**good)) == Address(**good)
    with pytest.raises(InvalidArgument) as err:
        check_address("shipping_address", Address(**(good | changes)))
    assert err.value.field == field
