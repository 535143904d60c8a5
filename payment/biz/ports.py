"""Ports the payment use cases need; implemented in data/ (Postgres) and adapter/ (providers)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Protocol

from payment.model.payment import Attempt, Consumed, NewPayment, Payment, PaymentStatus, Refund, Transition
from payment.model.provider import IntentRequest, ProviderEvent, ProviderIntent, ProviderRefund
from payment.model.stats import FailureRates

__all__ = ["EventPlan", "InboxRepo", "PaymentProvider", "PaymentRepo"]

# Given the payment an event refers to (locked), the transition it causes, or None for no effect.
EventPlan = Callable[[Payment], Transition | None]


class PaymentProvider(Protocol):
    """A card processor. Every mutating call carries an idempotency key, so a retry never charges twice."""

    name: str

    def available(self) -> bool:
        """False while the provider's circuit breaker is open (a call would fail fast)."""
        ...

    async def create_intent(self, request: IntentRequest, idempotency_key: str) -> ProviderIntent: ...

    async def capture(
        self, intent_id: str, amount_minor: int, idempotency_key: str, metadata: Mapping[str, str] | None = None
    ) -> ProviderIntent:
        """Capture at most the authorized amount; ``metadata`` is merged into the intent's."""
        ...

    async def get_intent(self, intent_id: str) -> ProviderIntent: ...

    async def cancel(self, intent_id: str, idempotency_key: str) -> ProviderIntent: ...

    async def refund(self, intent_id: str, amount_minor: int, idempotency_key: str) -> ProviderRefund: ...

    async def find_intent(self, idempotency_key: str) -> ProviderIntent | None:
        """The intent created with ``idempotency_key``, if any: resolves an unknown outcome after a timeout."""
        ...

    async def list_intents(
        self, created_after: int, created_until: int, starting_after: str | None, limit: int
    ) -> tuple[list[ProviderIntent], bool]:
        """A page of the intents created within (created_after, created_until] (Unix seconds), newest first,
        after the intent ``starting_after``; (page, more to come). For reconciling intents against payments."""
        ...

    def parse_event(self, payload: bytes, signature: str) -> ProviderEvent:
        """Verify the webhook signature (PermissionDenied if bad) and parse the event."""
        ...


class PaymentRepo(Protocol):
    async def create_or_get(self, new: NewPayment) -> tuple[Payment, bool]:
        """Insert a PENDING payment unless its idempotency key exists; (row, created)."""
        ...

    async def get(self, payment_id: uuid.UUID) -> Payment | None: ...

    async def get_by_key(self, idempotency_key: str) -> Payment | None:
        """The payment AuthorizePayment created with this idempotency key."""
        ...

    async def captured_for_order(self, order_id: str) -> Payment | None:
        """The order's capturing/captured/refunded payment (at most one: invariant 2)."""
        ...

    async def by_order_ref(self, order_ref: str) -> list[Payment]:
        """Every payment of a checkout session (a retry after a decline makes another), oldest first."""
        ...

    async def unsettled(self, statuses: Iterable[PaymentStatus], idle_seconds: float, limit: int) -> list[Payment]:
        """Payments in ``statuses`` (PENDING, CAPTURING, VOIDING) unchanged for ``idle_seconds`` and not
        claimed (no lease, or one that ran out), oldest first: what a failure in mid-operation left."""
        ...

    async def pending_refunds(self, idle_seconds: float, limit: int) -> list[tuple[Refund, Payment]]:
        """Refunds still PENDING ``idle_seconds`` after they were reserved, oldest first, with their payment."""
        ...

    async def apply(self, payment_id: uuid.UUID, transition: Transition) -> Payment | None:
        """Conditional update with its event, attempt and inbox claim in one transaction; None if it did not apply."""
        ...

    async def record_attempt(self, payment_id: uuid.UUID, attempt: Attempt) -> None: ...

    async def with_event_seen(self, provider: str, event_id: str, payment_id: uuid.UUID) -> tuple[Payment | None, bool]:
        """One read: the payment (None when there is none) and whether the provider event was claimed already."""
        ...

    async def record_provider_event(self, provider: str, event: ProviderEvent, payment_id: uuid.UUID | None) -> bool:
        """Claim a provider event that has nothing to apply, on its own; False when it was claimed already."""
        ...

    async def apply_provider_event(
        self, provider: str, event: ProviderEvent, payment_id: uuid.UUID | None, plan: EventPlan
    ) -> tuple[bool, Payment | None]:
        """Dedupe the event and apply its effect in one transaction; (duplicate, payment after the effect)."""
        ...

    async def reserve_refund(
        self, payment_id: uuid.UUID, idempotency_key: str, amount_minor: int | None
    ) -> tuple[Refund, Payment]:
        """Insert the refund and add it to refunded_minor if the captured money covers it; idempotent by key."""
        ...

    async def finish_refund(
        self,
        refund: Refund,
        *,
        provider_refund_id: str | None,
        succeeded: bool,
        attempt: Attempt,
        consumed: Consumed | None = None,
    ) -> Payment:
        """Mark the refund done (with its event) or failed (giving the amount back), and ``consumed`` with it."""
        ...


class PaymentStats(Protocol):
    async def failure_rates(self, start: datetime, end: datetime) -> FailureRates:
        """Payments created in [start, end), and the declined or failed ones by failure code."""
        ...


class InboxRepo(Protocol):
    """Consumed events already applied, so a redelivery has no second effect (invariant 5)."""

    async def inbox_seen(self, consumer: str, event_id: str) -> bool: ...

    async def claim_inbox(self, consumer: str, event_id: str) -> bool:
        """Record the event as applied; False if it already was."""
        ...
