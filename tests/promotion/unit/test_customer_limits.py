"""The mailbox key a per-customer limit counts guests by: spellings of one mailbox share it."""

from __future__ import annotations

import pytest

from promotion.model.customer import email_key

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "variant",
    [
        "ann@example.com",
        "  Ann@Example.COM ",
        "ann+coupon2@example.com",
        "ANN+anything+else@example.com",
        "ann@example.com.",
    ],
)
def test_spellings_of_one_mailbox_share_a_key(variant: str) -> None:
    assert email_key(variant) == email_key("ann@example.com")


@pytest.mark.parametrize("variant", ["a.n.n@gmail.com", "Ann+1@googlemail.com", "an.n+x@GMAIL.com"])
def test_gmail_ignores_dots_and_its_other_domain(variant: str) -> None:
    assert email_key(variant) == email_key("ann@gmail.com")


def test_dots_count_outside_gmail_and_other_mailboxes_differ() -> None:
    assert email_key("a.nn@example.com") != email_key("ann@example.com")
    assert email_key("ann@example.org") != email_key("ann@example.com")
    assert email_key("bob@example.com") != email_key("ann@example.com")


@pytest.mark.parametrize("nothing", ["", "   ", "no-at-sign", "@example.com", "ann@", "+@example.com"])
def test_no_mailbox_has_no_key(nothing: str) -> None:
    assert email_key(nothing) is None


def test_the_key_keeps_no_address() -> None:
    key = email_key("ann@example.com")
    assert key is not None
    assert "ann" not in key
    assert "example" not in key
    assert len(key) == 64
