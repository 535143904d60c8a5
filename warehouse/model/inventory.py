"""Value objects of the warehouse: warehouses, stock levels and reservations."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from kernel.address import Address

__all__ = [
    "Address",
    "Reservation",
    "ReservationStatus",
    "ReserveLine",
    "StockLevel",
    "StockSetting",
    "Warehouse",
    "collapse_lines",
]


class ReservationStatus(StrEnum):
    """Lifecycle of a reservation; only ACTIVE holds stock (counted in ``stock.reserved``).

    ACTIVE → CONFIRMED (sold: on_hand dropped), RELEASED or EXPIRED (held units given back);
    CONFIRMED → RESTOCKED (the order was cancelled or its payment failed: the sold units went back
    on hand). Only CONFIRMED rows count as sold; every state but ACTIVE and CONFIRMED is final.
    """

    ACTIVE = "active"
    CONFIRMED = "confirmed"
    RELEASED = "released"
    EXPIRED = "expired"
    RESTOCKED = "restocked"


@dataclass(frozen=True, slots=True)
class Warehouse:
    warehouse_id: str
    name: str
    address: Address = field(default_factory=Address)


@dataclass(frozen=True, slots=True)
class StockLevel:
    sku: str
    warehouse_id: str
    on_hand: int
    reserved: int

    @property
    def available(self) -> int:
        """What can still be reserved; never negative (the database keeps reserved <= on_hand)."""
        return max(0, self.on_hand - self.reserved)


@dataclass(frozen=True, slots=True)
class Reservation:
    reservation_id: str
    reservation_ref: str
    sku: str
    warehouse_id: str
    quantity: int
    status: ReservationStatus
    expires_at: datetime
    origin: Address = field(default_factory=Address)


@dataclass(frozen=True, slots=True)
class ReserveLine:
    sku: str
    quantity: int


@dataclass(frozen=True, slots=True)
class StockSetting:
    sku: str
    warehouse_id: str
    on_hand: int


def collapse_lines(lines: Iterable[ReserveLine]) -> list[ReserveLine]:
    """Sum the quantities of repeated skus, keeping the order in which each sku first appears."""
    totals: dict[str, int] = {}
    for line in lines:
        totals[line.sku] = totals.get(line.sku, 0) + line.quantity
    return [ReserveLine(sku, qty) for sku, qty in totals.items()]
