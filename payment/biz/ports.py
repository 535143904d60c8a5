"""Ports the payment use cases need; implemented in data/ (Postgres) and adapter/ (providers).

A use case asks its :class:`UnitOfWork` for a transaction (or for single statements) and does that step's reads
and writes on the :class:`Tx` it gets; no repository opens a transaction of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from payment.model.payment import (
    Attempt,
    EventRecord,
    NewPayment,
    NothingToDo,
    Payment,
    PaymentStatus,
    Refund,
    Transition,
)
from payment.model.provider import IntentRequest, ProviderEvent, ProviderIntent, ProviderRefund
from payment.model.stats import FailureRates

__all__ = [
    "InboxRepo",
    "PaymentProvider",
    "PaymentRepo",
    "PaymentStats",
    "ProviderEventRepo",
    "RefundRepo",
    "Tx",
    "UnitOfWork",
]


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
        """Insert a PENDING payment unless its idempotency key exists; (row, created). Two statements at most,
        each committed by itself: for ``UnitOfWork.single()``."""
        ...

    async def get(self, payment_id: uuid.UUID) -> Payment | None: ...

    async def lock(self, payment_id: uuid.UUID) -> Payment | None:
        """The payment, locked until the transaction ends (FOR UPDATE), the latest version even if it changed
        since the transaction's snapshot."""
        ...

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

    async def apply(self, payment_id: uuid.UUID, transition: Transition) -> Payment | None:
        """The transition's conditional update with its attempt row, its outbox event and the inbox claim of
        ``transition.consumed``, all in one statement, written only if the update applied; None if it did not.
        FailedPrecondition when another payment of the order is captured already."""
        ...

    async def apply_provider_event(
        self, payment_id: uuid.UUID, transition: Transition, provider: str, event: ProviderEvent, before: PaymentStatus
    ) -> tuple[bool, Payment | None]:
        """One statement: claim the provider ``event`` for ``payment_id`` (as ProviderEventRepo.claim, and only if
        it would record it for that payment) and, only if it was claimed now, apply ``transition`` as :meth:`apply`
        does; (claimed now, the payment if the transition applied). ``before``: the status it was planned from."""
        ...

    async def record_attempt(self, payment_id: uuid.UUID, attempt: Attempt) -> None: ...

    async def add_refunded(self, payment_id: uuid.UUID, amount_minor: int) -> Payment:
        """Set ``amount_minor`` of the captured money aside for a refund (refunded_minor grows)."""
        ...

    async def settle_refund(self, refund: Refund, *, succeeded: bool) -> Payment:
        """A finished refund: REFUNDED or PARTIALLY_REFUNDED when it succeeded, else its amount given back."""
        ...


class RefundRepo(Protocol):
    async def by_key(self, idempotency_key: str) -> Refund | None: ...

    async def insert(self, payment_id: uuid.UUID, idempotency_key: str, amount_minor: int) -> Refund | None:
        """A PENDING refund; None when its idempotency key is taken."""
        ...

    async def finish(self, refund: Refund, *, succeeded: bool, provider_refund_id: str | None) -> bool:
        """Mark a PENDING refund SUCCEEDED or FAILED; False when it was not PENDING any more."""
        ...

    async def pending(self, idle_seconds: float, limit: int) -> list[tuple[Refund, Payment]]:
        """Refunds still PENDING ``idle_seconds`` after they were reserved, oldest first, with their payment."""
        ...


class ProviderEventRepo(Protocol):
    async def claim(
        self, provider: str, event: ProviderEvent, payment_id: uuid.UUID | None
    ) -> tuple[bool, uuid.UUID | None]:
        """Record a provider event once, with the payment it is about (the one holding its intent, else
        ``payment_id`` if that payment is with this provider): (claimed now, that payment's id)."""
        ...

    async def record_if_nothing_to_do(
        self, provider: str, event: ProviderEvent, payment_id: uuid.UUID, when: NothingToDo
    ) -> EventRecord:
        """One statement: the payment ``payment_id`` and whether the event was claimed already; and when ``when``
        holds for that payment, the event claimed as :meth:`claim` claims it. No lock."""
        ...


class PaymentStats(Protocol):
    async def failure_rates(self, start: datetime, end: datetime) -> FailureRates:
        """Payments created in [start, end), and the declined or failed ones by failure code."""
        ...


class InboxRepo(Protocol):
    """Consumed events already applied, so a redelivery has no second effect (invariant 5)."""

    async def seen(self, consumer: str, event_id: str) -> bool: ...

    async def claim(self, consumer: str, event_id: str) -> bool:
        """Record the event as applied; False if it already was."""
        ...


class Tx(Protocol):
    """One open transaction (or, from ``read()``/``single()``/``statement()``, statements that each commit by
    themselves)."""

    # Read-only members: an implementation may hold its own repository classes (SqlTx's SqlPaymentRepo, ...).
    @property
    def payments(self) -> PaymentRepo: ...
    @property
    def refunds(self) -> RefundRepo: ...
    @property
    def provider_events(self) -> ProviderEventRepo: ...
    @property
    def inbox(self) -> InboxRepo: ...
    @property
    def stats(self) -> PaymentStats: ...

    async def add_event(self, event_type: str, aggregate_id: str, data: dict[str, Any]) -> None:
        """Record an outbox event in this transaction."""
        ...

    async def audit(self, *targets: str) -> None:
        """Record the admin's change (when an admin is calling) in this transaction's audit log."""
        ...


class UnitOfWork(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """Begin a transaction: committed when the block exits cleanly, rolled back on an exception."""
        ...

    def read(self) -> AbstractAsyncContextManager[Tx]:
        """Repositories for reads that are one statement each: no transaction, never a write."""
        ...

    def single(self) -> AbstractAsyncContextManager[Tx]:
        """Repositories for one write that is one statement and writes no event: atomic and committed on its
        own, with no BEGIN/COMMIT round trips. Never for two writes that must commit together."""
        ...

    def statement(self) -> AbstractAsyncContextManager[Tx]:
        """``single()`` for one write whose statement writes its outbox event itself (a transition's ``apply``
        does, in a CTE): the publisher is woken after it. Never with ``add_event`` (a statement of its own,
        refused); an admin's call gets a transaction instead (``infra.outbox_cte.StatementUnitOfWork``)."""
        ...
