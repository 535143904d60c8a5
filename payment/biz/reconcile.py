"""Reconcile the provider's intents against payments: cancel a hold no payment stands behind.

Payment writes its row before it calls the provider, so every intent Kassa creates names a payment
(``metadata.payment_id``). An intent can still outlive what its payment says: an authorization that
reached the provider after the void that looked for it had found nothing (a late request), the cancel
of an orphan that failed, a row lost with a database restore, an intent at a provider the payment was
not recorded with. Such a hold has no live payment behind it, so no order will ever capture or void
it: invariant 3's money leak. :func:`cancel_if_orphaned` cancels it, at once when a webhook shows it,
and :class:`ReconcileIntents` finds the rest by listing each provider's intents once they are older than
the grace period (the longest a checkout may take, during which the payment row may still be moving).
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter

from payment.biz.common import record_attempt
from payment.biz.ports import PaymentProvider, UnitOfWork
from payment.biz.providers import Providers
from payment.model.payment import NOTHING_HELD, Attempt, Payment, PaymentStatus
from payment.model.provider import IntentStatus, ProviderError, ProviderIntent, ProviderUnavailable

__all__ = ["OPEN_INTENT", "ReconcileIntents", "cancel_if_orphaned", "orphaned"]

log = logging.getLogger("kassa.payment.reconcile")

S = PaymentStatus
# An intent that holds money at the provider (an orphan of it is a leak while it stays open).
OPEN_INTENT = frozenset({IntentStatus.REQUIRES_CAPTURE, IntentStatus.REQUIRES_ACTION})
_PAGE = 100


def orphaned(intent: ProviderIntent, provider: str, payment: Payment | None) -> str | None:
    """Why the open ``intent`` at ``provider`` has no live payment behind it, or None when it has one."""
    if intent.status not in OPEN_INTENT:
        return None
    if payment is None:
        return "no payment has it"
    if payment.provider != provider:
        return f"its payment is with provider {payment.provider}"
    if payment.provider_payment_id and payment.provider_payment_id != intent.intent_id:
        return f"its payment holds intent {payment.provider_payment_id}"
    if payment.status in NOTHING_HELD:
        return f"its payment is {payment.status.value}"
    return None


def _payment_id(intent: ProviderIntent) -> uuid.UUID | None:
    try:
        return uuid.UUID(intent.metadata.get("payment_id", ""))
    except ValueError:
        return None


async def cancel_if_orphaned(
    uow: UnitOfWork, provider: PaymentProvider, intent: ProviderIntent, payment: Payment | None
) -> str | None:
    """Cancel ``intent`` if no live payment stands behind it. Protects invariant 3; idempotent by its key.

    Returns why it was cancelled, or None. Raises ProviderError when the provider would not cancel.
    """
    why = orphaned(intent, provider.name, payment)
    if why is None:
        return None
    canceled = await provider.cancel(intent.intent_id, f"reconcile-{intent.intent_id}")
    log.warning("cancelled intent %s at %s: %s", intent.intent_id, provider.name, why)
    if payment is not None:
        request = {"intent_id": intent.intent_id, "reason": why}
        await record_attempt(
            uow, payment.payment_id, Attempt("void", request, {"status": canceled.status.value}, "orphan_canceled")
        )
    return why


class ReconcileIntents:
    """Examines each provider's intents once, when they pass the grace period (oldest first after a start).

    It remembers per provider up to which creation time it has looked; a start looks back
    ``lookback_seconds``. Several replicas may each look: cancelling is idempotent.
    """

    def __init__(self, uow: UnitOfWork, providers: Providers, *, grace_seconds: float, lookback_seconds: float) -> None:
        self._uow = uow
        self._providers = providers
        self._grace = grace_seconds
        self._lookback = lookback_seconds
        self._until: dict[str, int] = {}

    async def __call__(self, now: float) -> Counter[str]:
        """Reconcile the intents created since the last pass and at least the grace period before ``now``."""
        outcomes: Counter[str] = Counter()
        until = int(now - self._grace)
        for name, provider in self._providers.items():
            since = self._until.get(name, int(now - self._lookback))
            if until <= since:
                continue
            try:
                await self._range(provider, since, until, outcomes)
            except ProviderError as exc:
                # Looked again from the same point next time.
                log.warning("reconciling intents at %s failed: %s", name, exc)
                outcomes["reconcile: provider unavailable"] += 1
                continue
            self._until[name] = until
        return outcomes

    async def _range(self, provider: PaymentProvider, since: int, until: int, outcomes: Counter[str]) -> None:
        cursor: str | None = None
        while True:
            page, more = await provider.list_intents(since, until, cursor, _PAGE)
            for intent in page:
                if intent.status not in OPEN_INTENT:
                    continue
                payment_id = _payment_id(intent)
                if payment_id is None:
                    continue  # not created by Kassa
                async with self._uow.read() as tx:
                    payment = await tx.payments.get(payment_id)
                try:
                    if await cancel_if_orphaned(self._uow, provider, intent, payment):
                        outcomes["reconcile: orphan cancelled"] += 1
                except ProviderUnavailable:
                    raise
                except ProviderError as exc:
                    # Captured or failed there meanwhile, say: nothing to cancel, and no reason to stop the scan.
                    log.error("could not cancel orphaned intent %s at %s: %s", intent.intent_id, provider.name, exc)
                    outcomes["reconcile: cancel refused"] += 1
            if not more or not page:
                return
            cursor = page[-1].intent_id
