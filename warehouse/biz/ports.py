"""What the use cases need from storage, as protocols (implemented by warehouse.data).

A use case that writes asks its :class:`UnitOfWork` for one :class:`Tx` per step
(``uow.transaction()``): everything it does inside commits together, and a
:class:`~kernel.errors.DomainError` raised inside rolls all of it back (all or nothing). A use case that
only reads uses ``uow.read()``, whose statements each commit by themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from warehouse.model.allocation import Allocation
from warehouse.model.inventory import Reservation, ReservationStatus, StockLevel, StockSetting, Warehouse
from warehouse.model.reconciliation import StockAudit

__all__ = ["NewEvent", "Tx", "UnitOfWork"]


@dataclass(frozen=True)
class NewEvent:
    """An event for the outbox: its type, the aggregate it is about, its data."""

    event_type: str
    aggregate_id: str
    data: Mapping[str, Any]


class Tx(Protocol):
    async def lock_ref(self, reservation_ref: str) -> None:
        """Serialise every mutating step of one reservation_ref (held until commit)."""

    async def reservations_of(self, reservation_ref: str) -> list[Reservation]:
        """The ref's reservations with their origin addresses, sorted by (sku, warehouse_id)."""

    async def discard_finished(self, reservation_ref: str) -> None:
        """Delete the ref's released/expired rows (they hold no stock) before it reserves anew."""

    async def reservations_and_stock(
        self, reservation_ref: str, skus: Sequence[str]
    ) -> tuple[list[Reservation], list[StockLevel], dict[str, str]]:
        """reservations_of, and every stock row of ``skus`` locked in (sku, warehouse_id) order with its level and
        its warehouse's country, in one statement."""
        ...

    async def lock_stock_rows(self, keys: Sequence[tuple[str, str]]) -> None:
        """Lock exactly these (sku, warehouse_id) stock rows, in that order, until commit."""

    async def hold_and_insert(
        self, reservation_ref: str, allocations: Sequence[Allocation], ttl_seconds: int
    ) -> tuple[set[tuple[str, str]], list[Reservation]]:
        """reserved += quantity where on_hand - reserved allows it, then the reservations inserted only if every
        stock row was held, in one statement: the (sku, warehouse_id) pairs held, and the new reservations as
        :meth:`reservations_of` answers them (origin address, by sku and warehouse; none unless every row was
        held)."""
        ...

    async def transition(
        self,
        reservation_ref: str,
        to: ReservationStatus,
        *,
        only_unexpired: bool,
        src: ReservationStatus = ReservationStatus.ACTIVE,
    ) -> list[Reservation]:
        """``src`` → ``to`` for the ref's rows (only those not past expires_at when asked); the changed rows."""

    async def transition_listed(
        self, reservation_ref: str, to: ReservationStatus, *, only_unexpired: bool
    ) -> tuple[list[Reservation], list[Reservation]]:
        """transition from ACTIVE and reservations_of in one statement: the rows changed, and every row of the ref
        (with origin addresses, by sku and warehouse) as it stands after the change."""
        ...

    async def extend(self, reservation_ref: str, ttl_seconds: int) -> list[Reservation]:
        """Push expires_at of the ref's active, unexpired rows to at least now + ttl; the changed rows."""

    async def expire_due(self, limit: int) -> list[Reservation]:
        """ACTIVE → EXPIRED for up to ``limit`` rows past expires_at, skipping rows other replicas hold."""

    async def give_back(self, held: Sequence[Reservation], *, sold: bool, event: NewEvent | None = None) -> None:
        """reserved -= quantity (and on_hand -= quantity when ``sold``) for each reservation's stock row; with
        ``event``, its outbox row is written by the same statement."""

    async def restock(self, sold: Sequence[Reservation]) -> None:
        """on_hand += quantity for each (confirmed, now restocked) reservation's stock row."""

    async def claim_event(self, consumer: str, event_id: str) -> bool:
        """Record that ``consumer`` handled ``event_id``, committed with its effect; False if it already had."""

    async def set_stock(self, settings: Sequence[StockSetting]) -> tuple[list[StockLevel], list[int]]:
        """Upsert on_hand; the levels written and the indexes of settings refused (on_hand < reserved)."""

    async def missing_warehouses(self, warehouse_ids: Sequence[str]) -> set[str]: ...

    async def upsert_warehouses(self, items: Sequence[Warehouse]) -> None: ...

    async def lock_and_audit(self, keys: Sequence[tuple[str, str]]) -> list[StockAudit]:
        """Lock these stock rows in (sku, warehouse_id) order, then recompute their active units."""

    async def set_reserved(self, audits: Sequence[StockAudit]) -> list[StockAudit]:
        """reserved = active_reserved for each (locked) row where that fits on_hand; the rows written."""

    async def stock_levels(self, skus: Sequence[str]) -> list[StockLevel]:
        """on_hand and reserved of every stock row of ``skus``, in (sku, warehouse_id) order."""

    async def warehouses(self, warehouse_ids: Sequence[str] | None = None) -> list[Warehouse]:
        """The warehouses (those of ``warehouse_ids`` only, when given), by warehouse_id."""

    async def audit_stock(self, skus: Sequence[str] | None = None) -> tuple[int, list[StockAudit]]:
        """One consistent snapshot (a single statement, no locks): rows checked, and the audits of the
        rows with problems (of ``skus`` only, when given)."""

    async def add_event(self, event_type: str, aggregate_id: str, data: Mapping[str, Any]) -> None:
        """Record an event in the outbox, committed with the change it describes."""


class UnitOfWork(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """One transaction: commits when the block exits cleanly, rolls back on an exception."""
        ...

    def read(self) -> AbstractAsyncContextManager[Tx]:
        """For reads only: each statement commits by itself (no BEGIN/ROLLBACK round trips)."""
        ...
