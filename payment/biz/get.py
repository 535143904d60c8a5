"""GetPayment, and its refresh: the status poll that stands in for a late webhook."""

from __future__ import annotations

import uuid

from payment.biz.common import invalid_state, load, unavailable
from payment.biz.ports import UnitOfWork
from payment.biz.providers import Providers
from payment.biz.webhook import apply_provider_event
from payment.model.payment import COD_PROVIDER, Payment
from payment.model.provider import (
    EventKind,
    IntentStatus,
    ProviderError,
    ProviderEvent,
    ProviderIntent,
    ProviderUnavailable,
)

__all__ = ["GetPayment", "RefreshPayment", "poll_events"]

# What a webhook for an intent in this status would have said.
_KIND_OF_STATUS = {
    IntentStatus.REQUIRES_CAPTURE: EventKind.AUTHORIZED,
    IntentStatus.SUCCEEDED: EventKind.CAPTURED,
    IntentStatus.CANCELED: EventKind.CANCELED,
    IntentStatus.FAILED: EventKind.FAILED,
}


class GetPayment:
    """Read one payment (privileged callers only, enforced by the servicer): no invariant at stake."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, payment_id: uuid.UUID) -> Payment:
        return await load(self._uow, payment_id)


def poll_events(intent: ProviderIntent) -> list[ProviderEvent]:
    """The webhook events the intent's current state implies, with ids that name that state.

    The ids are deterministic (``poll:<intent>:<kind>[:<refunded>]``), so polling the same state
    twice is deduplicated like a redelivered webhook; a real webhook for the same change has
    another id, and the forward-only transitions of :func:`plan_for` make it a no-op.
    """
    kind = _KIND_OF_STATUS.get(intent.status)
    if kind is None:
        return []
    events = [ProviderEvent(f"poll:{intent.intent_id}:{kind.value}", kind, f"poll.{intent.status.value}", intent)]
    if kind == EventKind.CAPTURED and intent.amount_refunded > 0:
        refund_id = f"poll:{intent.intent_id}:refunded:{intent.amount_refunded}"
        events.append(ProviderEvent(refund_id, EventKind.REFUNDED, "poll.refunded", intent))
    return events


class RefreshPayment:
    """Ask the provider for the intent and apply what its webhook would. Protects invariant 3 and 5.

    A 3-D Secure webhook can be late or lost; checkout polls with this. The intent's state
    becomes a synthesized provider event and goes through the same deduplication and the
    same forward-only transition as a webhook (events through the outbox as usual). A PENDING
    payment with no intent id yet (its authorize timed out) is looked up by its key.
    """

    def __init__(self, uow: UnitOfWork, providers: Providers) -> None:
        self._uow = uow
        self._providers = providers

    async def __call__(self, payment_id: uuid.UUID) -> Payment:
        payment = await load(self._uow, payment_id)
        if payment.provider == COD_PROVIDER:
            return payment
        provider = self._providers.holding(payment.provider)
        try:
            if payment.provider_payment_id:
                intent: ProviderIntent | None = await provider.get_intent(payment.provider_payment_id)
            else:
                intent = await provider.find_intent(payment.idempotency_key)
        except ProviderUnavailable as exc:
            raise unavailable(payment_id, exc) from exc
        except ProviderError as exc:
            raise invalid_state(payment, "refresh", f"the provider refused the lookup ({exc.code})") from exc
        if intent is None:
            return payment
        for event in poll_events(intent):
            _, applied = await apply_provider_event(self._uow, provider.name, event, payment_id)
            payment = applied or payment
        return payment
