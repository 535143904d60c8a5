"""Payment outcomes in Prometheus, counted when a payment's status change commits (payment_repo).

``kassa_payment_outcomes_total{provider, outcome, code}``: every status a payment reaches (authorized, declined,
requires_action, captured, voided, refunded, …), with the provider's decline or failure code for the declined
and failed ones; ``kassa_payment_three_ds_total{provider, result}``: 3-D Secure required, then passed or failed.
Claims held while a provider is called (CAPTURING, VOIDING) and PENDING are steps, not outcomes: not counted.
"""

from __future__ import annotations

from prometheus_client import Counter

from payment.model.payment import Payment, PaymentStatus

__all__ = ["PAYMENT_OUTCOMES", "THREE_DS", "count_outcome"]

PAYMENT_OUTCOMES = Counter(
    "kassa_payment_outcomes",
    "Payments reaching a status, by provider, outcome and (declined, failed) the provider's code",
    ["provider", "outcome", "code"],
)
THREE_DS = Counter(
    "kassa_payment_three_ds",
    "3-D Secure (customer action) by provider: required, then passed or failed",
    ["provider", "result"],
)

S = PaymentStatus
_NOT_OUTCOMES = frozenset({S.PENDING, S.CAPTURING, S.VOIDING})
_WITH_CODE = frozenset({S.DECLINED, S.FAILED})
_PASSED = frozenset({S.AUTHORIZED, S.CAPTURED})
# Provider codes are short machine strings; anything else is cut so a strange provider can't flood the labels.
_MAX_CODE = 40


def count_outcome(payment: Payment, before: PaymentStatus | None = None) -> None:
    """Count ``payment``'s new status; ``before`` (when known) tells a 3-D Secure result from a plain one."""
    status = payment.status
    if status in _NOT_OUTCOMES or status is before:
        return
    code = (payment.failure_code or "unknown")[:_MAX_CODE] if status in _WITH_CODE else ""
    PAYMENT_OUTCOMES.labels(payment.provider, status.value.lower(), code).inc()
    if status is S.REQUIRES_ACTION:
        THREE_DS.labels(payment.provider, "required").inc()
    elif before is S.REQUIRES_ACTION:
        THREE_DS.labels(payment.provider, "passed" if status in _PASSED else "failed").inc()
