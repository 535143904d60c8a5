"""The sandbox ledger: each test token's behaviour and the intent state machine, without HTTP."""

from __future__ import annotations

import pytest

from devstack.sandbox.state import ApiError, SandboxState

pytestmark = pytest.mark.unit

BASE = "http://sandbox.test"


def _params(token: str, amount: int = 1000) -> dict[str, object]:
    return {"amount": amount, "currency": "usd", "payment_method": token, "return_url": "", "metadata": {}}


def test_visa_is_authorized_and_announces_it() -> None:
    state = SandboxState()
    outcome = state.create_intent(_params("tok_visa"), "k1", BASE)
    assert outcome.status == 200
    assert outcome.body["status"] == "requires_capture"
    assert outcome.body["amount_capturable"] == 1000
    assert [t for t, _ in outcome.events] == ["payment_intent.amount_capturable_updated"]
    assert not outcome.slow


@pytest.mark.parametrize(("token", "code"), [("tok_chargeDeclined", "card_declined"),
                                             ("tok_insufficientFunds", "insufficient_funds")])  # fmt: skip
def test_declines_are_402_card_errors(token: str, code: str) -> None:
    outcome = SandboxState().create_intent(_params(token), "k", BASE)
    assert outcome.status == 402
    assert outcome.body["error"]["type"] == "card_error"
    assert outcome.body["error"]["code"] == code
    assert outcome.body["error"]["payment_intent"]["status"] == "requires_payment_method"
    assert [t for t, _ in outcome.events] == ["payment_intent.payment_failed"]


def test_three_d_secure_requires_action_then_completes() -> None:
    state = SandboxState()
    outcome = state.create_intent(_params("tok_threeDSecure"), "k", BASE)
    intent_id = outcome.body["id"]
    assert outcome.body["status"] == "requires_action"
    assert outcome.body["next_action"]["redirect_url"] == f"{BASE}/v1/3ds/{intent_id}"
    assert outcome.events == []
    done = state.complete_action(intent_id, succeed=True)
    assert done.body["status"] == "requires_capture"
    assert [t for t, _ in done.events] == ["payment_intent.amount_capturable_updated"]
    # Completing twice changes nothing and announces nothing.
    assert state.complete_action(intent_id, succeed=True).events == []


def test_failed_authentication_fails_the_intent() -> None:
    state = SandboxState()
    intent_id = state.create_intent(_params("tok_threeDSecure"), "k", BASE).body["id"]
    outcome = state.complete_action(intent_id, succeed=False)
    assert outcome.body["status"] == "requires_payment_method"
    assert [t for t, _ in outcome.events] == ["payment_intent.payment_failed"]


def test_timeout_token_does_the_work_but_answers_slowly() -> None:
    state = SandboxState()
    outcome = state.create_intent(_params("tok_timeout"), "slow-key", BASE)
    assert outcome.slow
    assert [i.id for i in state.find_by_key("slow-key")] == [outcome.body["id"]]


def test_processing_error_and_unknown_token() -> None:
    state = SandboxState()
    with pytest.raises(ApiError) as err:
        state.create_intent(_params("tok_processingError"), "k", BASE)
    assert err.value.status == 500
    assert err.value.body["error"]["code"] == "processing_error"
    with pytest.raises(ApiError) as err:
        state.create_intent(_params("tok_nope"), "k", BASE)
    assert err.value.status == 400
    assert err.value.body["error"]["code"] == "invalid_payment_method"
    assert state.intents == {}


def test_capture_partial_then_refund_within_captured() -> None:
    state = SandboxState()
    intent_id = state.create_intent(_params("tok_visa"), "k", BASE).body["id"]
    with pytest.raises(ApiError) as err:
        state.capture(intent_id, 1001)
    assert err.value.body["error"]["code"] == "amount_too_large"
    captured = state.capture(intent_id, 600)
    assert captured.body["status"] == "succeeded"
    assert captured.body["amount_received"] == 600
    with pytest.raises(ApiError):
        state.refund(intent_id, 601)
    refund = state.refund(intent_id, 600)
    assert refund.body["amount"] == 600
    assert state.intents[intent_id].amount_refunded == 600
    assert [t for t, _ in refund.events] == ["charge.refunded"]


def test_cancel_is_idempotent_and_blocks_capture() -> None:
    state = SandboxState()
    intent_id = state.create_intent(_params("tok_visa"), "k", BASE).body["id"]
    assert state.cancel(intent_id).body["status"] == "canceled"
    again = state.cancel(intent_id)
    assert again.status == 200
    assert again.events == []
    assert state.count("cancel", intent_id) == 1
    with pytest.raises(ApiError) as err:
        state.capture(intent_id, None)
    assert err.value.status == 400
    assert err.value.body["error"]["code"] == "payment_intent_unexpected_state"


def test_cancel_of_captured_is_refused() -> None:
    state = SandboxState()
    intent_id = state.create_intent(_params("tok_visa"), "k", BASE).body["id"]
    state.capture(intent_id, None)
    with pytest.raises(ApiError) as err:
        state.cancel(intent_id)
    assert err.value.status == 400
