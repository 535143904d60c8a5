"""The decline-code label of kassa_payment_outcomes_total stays bounded whatever a provider sends."""

from __future__ import annotations

import pytest

from payment.data import outcomes


@pytest.fixture(autouse=True)
def fresh_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outcomes, "_codes_seen", set())


def test_a_provider_code_is_its_own_label_lowercased() -> None:
    assert outcomes._code_label("card_declined") == "card_declined"
    assert outcomes._code_label("Insufficient_Funds") == "insufficient_funds"
    assert outcomes._code_label(None) == "unknown"


def test_free_text_and_overlong_codes_are_other() -> None:
    assert outcomes._code_label("declined: ada@example.com") == "other"
    assert outcomes._code_label("x" * 41) == "other"


def test_past_the_cap_new_codes_are_other_and_known_ones_keep_their_label() -> None:
    for i in range(outcomes._MAX_CODES):
        assert outcomes._code_label(f"code_{i}") == f"code_{i}"
    assert outcomes._code_label("one_more") == "other"
    assert outcomes._code_label("code_0") == "code_0"
