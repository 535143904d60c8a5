"""ReserveStock: hold stock for a checkout session, all or nothing.

Protects DESIGN.md §4.1 (no oversell): stock rows are locked in (sku, warehouse_id) order (by the statement
that reads the ref's reservations), the plan is computed from the locked levels, and each hold is a conditional
``reserved + q <= on_hand`` update, so concurrent reservations can neither oversell nor deadlock. Also §4.4: a
retry with the same ref reserves nothing twice (the ref is locked and its live reservations are returned
unchanged), and a ref whose sold units were restocked is finished (refused), never reserved anew.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kernel.errors import FailedPrecondition, Reason
from warehouse.biz.ports import UnitOfWork
from warehouse.model.allocation import Shortage, allocate
from warehouse.model.inventory import Reservation, ReservationStatus, ReserveLine, collapse_lines

__all__ = ["ReserveCommand", "ReserveStock", "out_of_stock"]

_LIVE = (ReservationStatus.ACTIVE, ReservationStatus.CONFIRMED)


@dataclass(frozen=True, slots=True)
class ReserveCommand:
    reservation_ref: str
    lines: Sequence[ReserveLine]
    ttl_seconds: int
    ship_to_country: str = ""


def out_of_stock(shortages: Sequence[Shortage]) -> FailedPrecondition:
    """OUT_OF_STOCK naming every short sku and what is left of it."""
    metadata = {"skus": ",".join(s.sku for s in shortages)}
    metadata.update({f"available.{s.sku}": str(s.available) for s in shortages})
    detail = ", ".join(f"{s.sku} ({s.available} available)" for s in shortages)
    return FailedPrecondition(f"out of stock: {detail}", reason=Reason.OUT_OF_STOCK, metadata=metadata)


class ReserveStock:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, cmd: ReserveCommand) -> list[Reservation]:
        """Reserve every line or nothing; a ref with live (active or confirmed) reservations gets them back."""
        lines = collapse_lines(cmd.lines)
        async with self._uow.transaction() as tx:
            await tx.lock_ref(cmd.reservation_ref)
            # The ref's rows and the stock rows locked, in one statement after the ref's lock (a retry locks the
            # stock rows it then leaves alone, until this transaction ends).
            existing, levels, countries = await tx.reservations_and_stock(
                cmd.reservation_ref, sorted(line.sku for line in lines)
            )
            live = [r for r in existing if r.status in _LIVE]
            if live:
                return live
            if any(r.status is ReservationStatus.RESTOCKED for r in existing):
                # The session's order was sold and then cancelled: it is finished, and its rows stay as the
                # record that keeps a later event from restocking again.
                raise FailedPrecondition(
                    f"the order of {cmd.reservation_ref} was cancelled and its stock restocked",
                    reason=Reason.SESSION_NOT_OPEN,
                    metadata={"reservation_ref": cmd.reservation_ref},
                )
            if existing:
                await tx.discard_finished(cmd.reservation_ref)
            plan = allocate(lines, levels, countries, cmd.ship_to_country)
            if not plan.servable:
                raise out_of_stock(plan.shortages)
            # The holds and the reservations in one statement, which inserts them only if every hold took.
            held, inserted = await tx.hold_and_insert(cmd.reservation_ref, plan.allocations, cmd.ttl_seconds)
            short = [a for a in plan.allocations if (a.sku, a.warehouse_id) not in held]
            if short:
                # Rolls back the holds that took.
                by_sku = {level.sku: 0 for level in levels}
                for level in levels:
                    by_sku[level.sku] += level.available
                raise out_of_stock([Shortage(sku, by_sku.get(sku, 0)) for sku in sorted({a.sku for a in short})])
            return inserted
