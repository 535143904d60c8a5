"""kernel.validation: the text, sku, amount and count rules every service shares."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernel.errors import InvalidArgument
from kernel.validation import MAX_AMOUNT_MINOR, check_amount, check_count, check_sku, check_text, text_problem

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
