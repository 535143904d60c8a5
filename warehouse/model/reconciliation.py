"""Stock reconciliation: what ``stock.reserved`` should be, recomputed from the reservations (pure).

``reserved`` is a running total kept by every reservation step; the reservations themselves are the
record it must agree with (the units of ACTIVE rows; confirmed, released, expired and restocked rows
hold nothing). A finding is a stock row where the two disagree
or where the row itself breaks DESIGN.md §4.1 (negative, or more reserved than on hand).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Problem", "ReconcileReport", "ReconcileStatus", "StockAudit", "with_problems"]


class Problem(StrEnum):
    RESERVED_DRIFT = "reserved_drift"
    NEGATIVE_ON_HAND = "negative_on_hand"
    NEGATIVE_RESERVED = "negative_reserved"
    RESERVED_OVER_ON_HAND = "reserved_over_on_hand"
    OVERSOLD = "oversold"


class ReconcileStatus(StrEnum):
    """The outcome of a run, worst first: an oversell is never repaired by reconciliation."""

    OVERSOLD = "oversold"
    DRIFT = "drift"
    REPAIRED = "repaired"
    CLEAN = "clean"


@dataclass(frozen=True, slots=True)
class StockAudit:
    """One stock row next to the units its active reservations hold (``active_reserved``)."""

    sku: str
    warehouse_id: str
    on_hand: int
    reserved: int
    active_reserved: int

    @property
    def drift(self) -> int:
        """reserved minus what the active reservations hold: > 0 leaks stock, < 0 risks oversell."""
        return self.reserved - self.active_reserved

    @property
    def problems(self) -> tuple[Problem, ...]:
        found: list[Problem] = []
        if self.drift:
            found.append(Problem.RESERVED_DRIFT)
        if self.on_hand < 0:
            found.append(Problem.NEGATIVE_ON_HAND)
        if self.reserved < 0:
            found.append(Problem.NEGATIVE_RESERVED)
        if self.reserved > self.on_hand:
            found.append(Problem.RESERVED_OVER_ON_HAND)
        if self.active_reserved > max(self.on_hand, 0):
            found.append(Problem.OVERSOLD)
        return tuple(found)

    @property
    def repairable(self) -> bool:
        """Setting reserved to the recomputed units fixes the row without touching on_hand.

        When the active reservations hold more than is on hand, units were promised twice: on_hand is
        a physical count only an operator may change, so the row is reported, never silently adjusted.
        """
        return self.on_hand >= 0 and self.active_reserved <= self.on_hand


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """``findings`` are the rows with problems; ``repaired`` those whose reserved was set right."""

    checked: int
    findings: tuple[StockAudit, ...]
    repaired: tuple[StockAudit, ...] = ()

    @property
    def unrepairable(self) -> tuple[StockAudit, ...]:
        return tuple(f for f in self.findings if not f.repairable)

    @property
    def status(self) -> ReconcileStatus:
        if self.unrepairable:
            return ReconcileStatus.OVERSOLD
        repaired = {(r.sku, r.warehouse_id) for r in self.repaired}
        if any((f.sku, f.warehouse_id) not in repaired for f in self.findings):
            return ReconcileStatus.DRIFT
        return ReconcileStatus.REPAIRED if self.repaired else ReconcileStatus.CLEAN


def with_problems(audits: Sequence[StockAudit]) -> list[StockAudit]:
    """The audits that need attention, in (sku, warehouse_id) order."""
    return sorted((a for a in audits if a.problems), key=lambda a: (a.sku, a.warehouse_id))
