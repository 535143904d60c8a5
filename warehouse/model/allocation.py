"""Which warehouse serves which units of an order: a pure function of the order and the stock levels.

Preference order (DESIGN.md §1, warehouse owns origin addresses):

1. one warehouse that can serve the whole order (one parcel, one shipping quote), a warehouse in the
   ship-to country first;
2. otherwise as few warehouses as possible: greedily take the warehouse that can serve the most of what
   is still missing (ties: ship-to country first, then warehouse id, so the result is deterministic).

Anything that can't be served at all is reported as a shortage with the total available quantity, so the
caller can refuse the whole order (all or nothing) and name every short sku.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from warehouse.model.inventory import ReserveLine, StockLevel

__all__ = ["Allocation", "AllocationPlan", "Shortage", "allocate"]


@dataclass(frozen=True, slots=True)
class Allocation:
    sku: str
    warehouse_id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Shortage:
    sku: str
    available: int


@dataclass(frozen=True, slots=True)
class AllocationPlan:
    """Either allocations covering every line, or the shortages that make the order unservable."""

    allocations: tuple[Allocation, ...] = ()
    shortages: tuple[Shortage, ...] = ()

    @property
    def servable(self) -> bool:
        return not self.shortages


def allocate(
    lines: Sequence[ReserveLine],
    levels: Sequence[StockLevel],
    warehouse_countries: Mapping[str, str],
    ship_to_country: str = "",
) -> AllocationPlan:
    """Split ``lines`` (one per sku) across warehouses; allocations are sorted by (sku, warehouse_id)."""
    available: dict[str, dict[str, int]] = {line.sku: {} for line in lines}
    for level in levels:
        if level.sku in available and level.available > 0:
            available[level.sku][level.warehouse_id] = level.available

    shortages = tuple(
        Shortage(line.sku, sum(available[line.sku].values()))
        for line in lines
        if sum(available[line.sku].values()) < line.quantity
    )
    if shortages:
        return AllocationPlan(shortages=shortages)

    def is_local(warehouse_id: str) -> bool:
        return bool(ship_to_country) and warehouse_countries.get(warehouse_id, "") == ship_to_country

    warehouses = sorted({wh for per_sku in available.values() for wh in per_sku})
    whole = [wh for wh in warehouses if all(available[ln.sku].get(wh, 0) >= ln.quantity for ln in lines)]
    if whole:
        # Local first; then the warehouse with the most of these skus left, so stock drains evenly.
        chosen = min(whole, key=lambda wh: (not is_local(wh), -sum(available[ln.sku][wh] for ln in lines), wh))
        allocations = [Allocation(ln.sku, chosen, ln.quantity) for ln in lines]
    else:
        allocations = _greedy(lines, available, is_local)
    return AllocationPlan(allocations=tuple(sorted(allocations, key=lambda a: (a.sku, a.warehouse_id))))


def _greedy(
    lines: Sequence[ReserveLine],
    available: dict[str, dict[str, int]],
    is_local: Callable[[str], bool],
) -> list[Allocation]:
    """Fewest warehouses, greedily: each round takes the warehouse serving the most missing units."""
    missing = {line.sku: line.quantity for line in lines}
    unused = sorted({wh for per_sku in available.values() for wh in per_sku})
    allocations: list[Allocation] = []

    def served_by(wh: str) -> int:
        return sum(min(qty, available[sku].get(wh, 0)) for sku, qty in missing.items())

    while any(missing.values()):
        best = min(unused, key=lambda wh: (-served_by(wh), not is_local(wh), wh))
        unused.remove(best)
        for sku, qty in missing.items():
            take = min(qty, available[sku].get(best, 0))
            if take:
                allocations.append(Allocation(sku, best, take))
                missing[sku] = qty - take
    return allocations
