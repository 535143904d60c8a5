"""Payment outcomes in Prometheus, counted when a payment's status change commits (data.repositories).

``kassa_payment_outcomes_total{provider, outcome, code}``: every status a payment reaches (authorized, declined,
requires_action, captured, voided, refunded, …), with the provider's decline or failure code for the declined
and failed ones; ``kassa_payment_three_ds_total{provider, result}``: 3-D Secure required, then passed or failed.
Claims held while a provider is called (CAPTURING, VOIDING) and PENDING are steps, not outcomes: not counted.
"""

from __future__ import annotations

import re

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
# Provider codes are short machine strings (card_declined, insufficient_funds, …). The label takes at most
# _MAX_CODES distinct ones per process, each a short [a-z0-9_] string; anything else is "other", so a strange
# provider can't flood Prometheus with series.
_MAX_CODE = 40
_MAX_CODES = 64
_CODE = re.compile(rf"[a-z0-9_]{{1,{_MAX_CODE}}}")
_codes_seen: set[str] = set()


def _code_label(code: str | None) -> str:
    code = (code or "unknown").lower()
    if code in _codes_seen:
        return code
    if not _CODE.fullmatch(code) or len(_codes_seen) >= _MAX_CODES:
        return "other"
    _codes_seen.add(code)
    return code


def count_outcome(payment: Payment, before: PaymentStatus | None = None) -> None:
    """Count ``payment``'s new status; ``before`` (when known) tells a 3-D Secure result from a plain one."""
    status = payment.status
    if status in _NOT_OUTCOMES or status is before:
        return
    code = _code_label(payment.failure_code) if status in _WITH_CODE else ""
    PAYMENT_OUTCOMES.labels(payment.provider, status.value.lower(), code).inc()
    if status is S.REQUIRES_ACTION:
        THREE_DS.labels(payment.provider, "required").inc()
    elif before is S.REQUIRES_ACTION:
        THREE_DS.labels(payment.provider, "passed" if status in _PASSED else "failed").inc()
