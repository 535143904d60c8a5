"""Pure payment rules: forward-only webhook transitions. (The payment method rule: tests/infra/test_validation.py.)"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from kernel.money import Money
from payment.biz.webhook import plan_for
from payment.model.payment import Payment, PaymentStatus
from payment.model.provider import EventKind, IntentStatus, ProviderEvent, ProviderIntent

pytestmark = pytest.mark.unit

S = PaymentStatus


def _payment(status: PaymentStatus, captured: int = 0, refunded: int = 0) -> Payment:
    now = datetime.now(UTC)
    return Payment(
        payment_id=uuid.uuid4(), idempotency_key="k", order_ref="sess", order_id=None, customer_id="c",
        status=status, amount=Money("USD", 1000), captured_minor=captured, refunded_minor=refunded,
        provider="sandbox", provider_payment_id="pi_1", payment_method="tok_visa", return_url="",
        next_action_url=None, failure_code=None, failure_message=None, created_at=now, updated_at=now,
    )  # fmt: skip


def _event(kind: EventKind, *, received: int = 0, refunded: int = 0) -> ProviderEvent:
    intent = ProviderIntent("pi_1", IntentStatus.SUCCEEDED, 1000, amount_received=received, amount_refunded=refunded)
    return ProviderEvent("evt_1", kind, kind.value, intent)


def test_authorized_event_completes_a_required_action() -> None:
    plan = plan_for(_event(EventKind.AUTHORIZED), _payment(S.REQUIRES_ACTION))
    assert plan is not None
    assert plan.to == S.AUTHORIZED
    assert plan.event_type == "PaymentAuthorized"


@pytest.mark.parametrize("late", [S.CAPTURED, S.VOIDED, S.REFUNDED, S.FAILED])
def test_a_late_authorized_event_changes_nothing(late: PaymentStatus) -> None:
    assert plan_for(_event(EventKind.AUTHORIZED), _payment(late, captured=1000)) is None


def test_canceled_after_captured_changes_nothing() -> None:
    assert plan_for(_event(EventKind.CANCELED), _payment(S.CAPTURED, captured=1000)) is None


def test_captured_event_records_the_captured_amount() -> None:
    plan = plan_for(_event(EventKind.CAPTURED, received=700), _payment(S.AUTHORIZED))
    assert plan is not None
    assert plan.to == S.CAPTURED
    assert plan.changes["captured_minor"] == 700


def test_refund_event_only_moves_refunded_amount_forward() -> None:
    partial = plan_for(_event(EventKind.REFUNDED, refunded=400), _payment(S.CAPTURED, captured=1000))
    assert partial is not None
    assert partial.to == S.PARTIALLY_REFUNDED
    assert partial.changes["refunded_minor"] == 400
    stale = plan_for(_event(EventKind.REFUNDED, refunded=400), _payment(S.PARTIALLY_REFUNDED, 1000, 400))
    assert stale is None
    full = plan_for(_event(EventKind.REFUNDED, refunded=1000), _payment(S.PARTIALLY_REFUNDED, 1000, 400))
    assert full is not None
    assert full.to == S.REFUNDED


def test_unknown_events_have_no_effect() -> None:
    assert (
        plan_for(ProviderEvent("evt", EventKind.OTHER, "charge.dispute.created", None), _payment(S.AUTHORIZED)) is None
    )
