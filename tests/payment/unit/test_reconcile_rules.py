"""Which open provider intents have no live payment behind them (payment.biz.reconcile.orphaned)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from kernel.money import Money
from payment.biz.reconcile import orphaned
from payment.model.payment import Payment, PaymentStatus
from payment.model.provider import IntentStatus, ProviderIntent

S = PaymentStatus
INTENT = ProviderIntent("pi_1", IntentStatus.REQUIRES_CAPTURE, 500)
NOW = datetime.now(UTC)
PAYMENT = Payment(
    payment_id=uuid.uuid4(), idempotency_key="k", order_ref="sess", order_id=None, customer_id="c",
    status=S.AUTHORIZED, amount=Money("USD", 500), captured_minor=0, refunded_minor=0, provider="sandbox",
    provider_payment_id="pi_1", payment_method="tok_visa", return_url="", next_action_url=None, failure_code=None,
    failure_message=None, created_at=NOW, updated_at=NOW,
)  # fmt: skip


@pytest.mark.parametrize("status", [S.PENDING, S.REQUIRES_ACTION, S.AUTHORIZED, S.VOIDING, S.CAPTURING])
def test_a_payment_that_may_still_use_the_hold_keeps_it(status: PaymentStatus) -> None:
    assert orphaned(INTENT, "sandbox", dataclasses.replace(PAYMENT, status=status)) is None
    # A PENDING payment does not know its intent yet.
    assert orphaned(INTENT, "sandbox", dataclasses.replace(PAYMENT, status=status, provider_payment_id=None)) is None


@pytest.mark.parametrize("status", [S.VOIDED, S.FAILED, S.DECLINED])
def test_a_payment_that_holds_nothing_leaves_the_hold_orphaned(status: PaymentStatus) -> None:
    assert orphaned(INTENT, "sandbox", dataclasses.replace(PAYMENT, status=status)) == f"its payment is {status.value}"


def test_no_payment_another_provider_or_another_intent_is_orphaned() -> None:
    assert orphaned(INTENT, "sandbox", None) == "no payment has it"
    assert orphaned(INTENT, "backup", PAYMENT) == "its payment is with provider sandbox"
    assert orphaned(INTENT, "sandbox", dataclasses.replace(PAYMENT, provider_payment_id="pi_2")) == (
        "its payment holds intent pi_2"
    )


@pytest.mark.parametrize("status", [IntentStatus.SUCCEEDED, IntentStatus.CANCELED, IntentStatus.FAILED])
def test_an_intent_that_holds_nothing_is_never_orphaned(status: IntentStatus) -> None:
    assert orphaned(dataclasses.replace(INTENT, status=status), "sandbox", None) is None
