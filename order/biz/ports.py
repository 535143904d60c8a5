"""What the use cases need from the outside world, as Protocols (implemented in data/).

A use case that writes opens ``async with uow.statement() as tx`` when its step is one write statement whose
outbox event the repository writes in that statement (every step of the order service: ``create`` and
``transition`` do), else ``uow.transaction()``; one that only reads uses ``uow.read()``.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from order.model.order import NewOrder, Order, OrderStatus, PaymentOutcome, PaymentStatus, StatusChange

__all__ = ["InboxClaim", "OrderRepo", "PageCursor", "Transition", "TransitionResult", "Tx", "UnitOfWork"]


@dataclass(frozen=True, slots=True)
class InboxClaim:
    """A consumed event, recorded in the same transaction as its effect so a redelivery has none."""

    consumer: str
    event_id: str


@dataclass(frozen=True, slots=True)
class Transition:
    """Move ``order_id`` from one of ``sources`` to ``target`` (a conditional UPDATE), recording
    the history entry ``cause`` and the ``event_type`` outbox event in the same transaction.

    A non-empty ``payment_id`` is stored, and the update applies only if the order has no payment
    id yet or has this one (a second, different payment never confirms the same order).

    A non-empty ``unless_payment`` moves the order only if its payment status is none of these (read in
    the same statement: a payment event recording a void commits before or after, never in between).

    With ``payment_status`` (a payment event) the order's payment status is recorded too, if it moves
    it forward (``order.model.payment_status``); the update then applies when either the status moves
    or the payment status is recorded, the history entry keeps the status the order ends in, and the
    outbox event is written only if the status moved. Without a ``target`` only the payment status is
    considered. A payment event may name its order by ``checkout_session_id`` instead of ``order_id``.
    """

    order_id: str
    cause: str
    sources: frozenset[OrderStatus] = frozenset()
    target: OrderStatus | None = None
    event_type: str = ""
    payment_id: str = ""
    payment_outcome: PaymentOutcome | None = None
    payment_status: PaymentStatus | None = None
    unless_payment: frozenset[PaymentStatus] = frozenset()
    tracking_number: str = ""
    carrier: str = ""
    inbox: InboxClaim | None = None
    # With no ``order_id``, a payment event's order is the one of this checkout session, found by the same
    # statement (its inbox claim is made only if the session has an order).
    checkout_session_id: str = ""
    # With ``payment_status``: the caller needs no order back when the transition applied or recorded (the result's
    # ``order`` is then None), so the statement reads no lines, discounts or personal data and nothing is decrypted.
    # Any other outcome still comes with the order as it is.
    brief: bool = False


@dataclass(frozen=True, slots=True)
class TransitionResult:
    """``order`` is the order after the attempt (None if it does not exist, or if it ``applied`` or ``recorded`` a
    ``Transition.brief``).

    ``applied``: this call moved its status. ``recorded``: this call recorded its ``payment_status``.
    ``duplicate``: the inbox had already seen the event, nothing done.
    """

    order: Order | None
    applied: bool
    duplicate: bool = False
    recorded: bool = False


@dataclass(frozen=True, slots=True)
class PageCursor:
    """Keyset position in a customer's newest-first order list."""

    created_at: datetime
    order_id: str


class OrderRepo(Protocol):
    """The orders of one transaction (or, from ``UnitOfWork.read``, single statements each committed by itself)."""

    async def create(self, order: NewOrder, cause: str) -> tuple[Order, bool]:
        """Insert the order, its lines, discounts, first history entry and OrderCreated event (one statement);
        if an order already exists for the checkout session return it and False (nothing written)."""
        ...

    async def get(self, order_id: str) -> Order | None: ...

    async def history(self, order_id: str) -> list[StatusChange]: ...

    async def list_for_customer(self, customer_id: str, limit: int, after: PageCursor | None) -> list[Order]:
        """Newest first (created_at, order_id descending), strictly after ``after``."""
        ...

    async def transition(self, transition: Transition) -> TransitionResult:
        """Apply ``transition``'s conditional UPDATE with its history entry (and inbox claim) and, when the result
        is ``applied`` and the transition names an ``event_type``, its outbox event, all in one statement."""
        ...


class Tx(Protocol):
    """One open transaction: everything done through it commits or rolls back together."""

    # Read-only member: an implementation holds its own repository class (SqlTx's SqlOrderRepo).
    @property
    def orders(self) -> OrderRepo: ...

    async def add_event(self, event_type: str, aggregate_id: str, data: dict[str, Any]) -> None:
        """Record an outbox event in this transaction."""
        ...


class UnitOfWork(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """Begin a transaction: committed when the block exits cleanly, rolled back on an exception."""
        ...

    def statement(self) -> AbstractAsyncContextManager[Tx]:
        """One write statement (with the outbox rows it writes itself) committed on its own; reads may follow."""
        ...

    def read(self) -> AbstractAsyncContextManager[Tx]:
        """Repositories for reads that are one statement each: no transaction, never a write."""
        ...
