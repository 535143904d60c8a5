"""The payment sweeper: finish what a failure in mid-operation left, by asking the provider.

A crash, a lost database connection or a provider timeout between the provider call and the commit
leaves a payment in a status that says "in progress": VOIDING, CAPTURING, a refund PENDING, or the
PENDING of an authorization whose answer never came. The caller's retry with the same key finishes
it, but a caller may never retry (it crashed too, or gave up). The sweeper finishes each one that has
stayed so, unclaimed, for a while:

* VOIDING: the void is done again (cancelling at the provider is idempotent), so nothing stays held.
* CAPTURING: the provider is asked. Captured there: recorded CAPTURED. Not captured: back to AUTHORIZED
  (the capture's caller, or its DLQ entry, captures again). Cancelled there: VOIDED.
* a PENDING refund: sent again with its own key (the provider did it at most once), then recorded.
* PENDING past ``abandoned_seconds`` (longer than any checkout may take): nobody is waiting for this
  authorization any more, so it is voided; the intent its key created, if any, is found and cancelled.

Beside it the worker runs :class:`payment.biz.reconcile.ReconcileIntents`, which cancels provider intents
that no live payment stands behind, once they are ``abandoned_seconds`` old.

Every step is a conditional update or a call under the operation's own idempotency key, so several
sweepers (replicas) and a late caller can race without moving money twice.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field

from kernel.errors import DomainError
from kernel.money import Money
from payment.biz.capture import CAPTURE_LEASE_SECONDS
from payment.biz.common import apply
from payment.biz.ports import UnitOfWork
from payment.biz.providers import Providers
from payment.biz.refund import RefundPayment
from payment.biz.void import VoidAuthorization
from payment.model.payment import Attempt, Payment, PaymentStatus, Refund, Transition
from payment.model.provider import IntentStatus, ProviderError, ProviderIntent, ProviderUnavailable

__all__ = ["SweepPolicy", "SweepReport", "SweepStuckPayments", "settle_capture"]

log = logging.getLogger("kassa.payment.sweep")

S = PaymentStatus


@dataclass(frozen=True)
class SweepPolicy:
    # A VOIDING or CAPTURING payment or a PENDING refund this long unchanged (and unclaimed) is finished.
    stuck_seconds: float = 120.0
    # A PENDING authorization this long unanswered is abandoned: voided. Longer than any checkout (its lock).
    abandoned_seconds: float = 900.0
    # At most this many of each kind per pass.
    batch: int = 100
    # After a start, the provider's intents of this long back are reconciled against payments (see reconcile.py;
    # how far it got is kept in memory, so a longer downtime leaves older intents unexamined).
    reconcile_lookback_seconds: float = 3600.0


@dataclass
class SweepReport:
    outcomes: Counter[str] = field(default_factory=Counter)
    # A kind filled its batch: there may be more right away.
    more: bool = False

    def __bool__(self) -> bool:
        return bool(self.outcomes)


class SweepStuckPayments:
    """One pass over everything stuck. Protects invariant 3 (no hold outlives a failed checkout) and 2."""

    def __init__(self, uow: UnitOfWork, providers: Providers, policy: SweepPolicy) -> None:
        self._uow = uow
        self._providers = providers
        self._policy = policy
        self._void = VoidAuthorization(uow, providers)
        self._refund = RefundPayment(uow, providers)

    async def __call__(self) -> SweepReport:
        policy = self._policy
        report = SweepReport()
        async with self._uow.read() as tx:
            voiding = await tx.payments.unsettled({S.VOIDING}, policy.stuck_seconds, policy.batch)
        for payment in voiding:
            await _count(report, payment, "void", self._finish_void(payment, "void left unfinished"))
        async with self._uow.read() as tx:
            capturing = await tx.payments.unsettled({S.CAPTURING}, policy.stuck_seconds, policy.batch)
        for payment in capturing:
            await _count(report, payment, "capture", settle_capture(self._uow, self._providers, payment))
        async with self._uow.read() as tx:
            refunds = await tx.refunds.pending(policy.stuck_seconds, policy.batch)
        for refund, payment in refunds:
            await _count(report, payment, "refund", self._finish_refund(refund, payment))
        async with self._uow.read() as tx:
            abandoned = await tx.payments.unsettled({S.PENDING}, policy.abandoned_seconds, policy.batch)
        for payment in abandoned:
            reason = "abandoned: nobody asked for the authorization's outcome"
            await _count(report, payment, "abandoned", self._finish_void(payment, reason))
        report.more = any(len(found) >= policy.batch for found in (voiding, capturing, refunds, abandoned))
        return report

    async def _finish_void(self, payment: Payment, reason: str) -> str:
        done = await self._void(payment.payment_id, reason)
        return done.status.value

    async def _finish_refund(self, refund: Refund, payment: Payment) -> str:
        amount = Money(payment.amount.currency_code, refund.amount_minor)
        done, _ = await self._refund(payment, refund.idempotency_key, amount)
        return done.status.value


async def _count(report: SweepReport, payment: Payment, kind: str, step: Awaitable[str]) -> None:
    try:
        outcome = await step
    except (DomainError, ProviderError) as exc:
        # Still unknown (the provider is down) or refused: left for the next pass, or an operator.
        log.warning("sweep: %s of payment %s not finished: %s", kind, payment.payment_id, exc)
        report.outcomes[f"{kind}: not finished"] += 1
        return
    log.warning("sweep: payment %s was left %s; %s", payment.payment_id, payment.status.value, outcome)
    report.outcomes[f"{kind}: {outcome}"] += 1


async def settle_capture(uow: UnitOfWork, providers: Providers, payment: Payment) -> str:
    """Record what the provider says of a capture whose outcome was never recorded (see the module doc)."""
    payment_id = payment.payment_id
    # Take the claim over only once its holder's lease has run out (sources empty: only a lapsed claim matches).
    claimed = await apply(uow, payment_id, Transition(S.CAPTURING, frozenset(), lease_seconds=CAPTURE_LEASE_SECONDS))
    if claimed is None:
        return "taken over by another caller"
    summary: dict[str, object] = {
        "intent_id": claimed.provider_payment_id,
        "order_id": claimed.order_id,
        "by": "sweeper",
    }
    try:
        intent = await providers.holding(claimed.provider).get_intent(claimed.provider_payment_id or "")
    except (DomainError, ProviderError) as exc:
        await _release(uow, claimed, Attempt("capture", summary, {"error": str(exc)}, "unavailable"))
        raise
    transition = _capture_outcome(claimed, intent, summary)
    if transition is None:
        response = {"intent_id": intent.intent_id, "status": intent.status.value}
        await _release(uow, claimed, Attempt("capture", summary, response, "unexpected"))
        raise ProviderUnavailable("unexpected_state", f"the intent is {intent.status.value} while capturing")
    done = await apply(uow, payment_id, transition)
    return done.status.value if done else "changed meanwhile"


async def _release(uow: UnitOfWork, payment: Payment, attempt: Attempt) -> None:
    """Give the capture claim back at once: the next pass, or the capture's caller, may take it."""
    capturing = frozenset({S.CAPTURING})
    await apply(uow, payment.payment_id, Transition(S.CAPTURING, capturing, lease_seconds=0, attempt=attempt))


def _capture_outcome(payment: Payment, intent: ProviderIntent, summary: dict[str, object]) -> Transition | None:
    response = {"intent_id": intent.intent_id, "status": intent.status.value}
    capturing = frozenset({S.CAPTURING})
    if intent.status == IntentStatus.SUCCEEDED:
        captured = min(intent.amount_received, payment.amount.amount_minor)
        extra = {"captured_amount": {"currency_code": payment.amount.currency_code, "amount_minor": captured}}
        attempt = Attempt("capture", summary, response, "captured")
        return Transition(S.CAPTURED, capturing, {"captured_minor": captured}, "PaymentCaptured", extra, attempt)
    if intent.status == IntentStatus.REQUIRES_CAPTURE:
        # Never captured: the hold is as it was. The order id stays, for the capture that comes again.
        return Transition(S.AUTHORIZED, capturing, attempt=Attempt("capture", summary, response, "not_captured"))
    if intent.status == IntentStatus.CANCELED:
        attempt = Attempt("capture", summary, response, "canceled")
        return Transition(S.VOIDED, capturing, {}, "PaymentVoided", {"reason": "canceled at the provider"}, attempt)
    return None
