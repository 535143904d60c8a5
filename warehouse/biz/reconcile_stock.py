"""Reconcile ``stock.reserved`` with the reservations, and repair drift when asked.

Protects DESIGN.md §4.1 (no oversell) and §4.4 (no stock leak): ``reserved`` must equal the units of
the ACTIVE reservations of its row. Too high and units are held by nobody (a leak no sweeper frees); too
low and the next ReserveStock can promise units that are already held (an oversell). Nothing else holds
stock: CONFIRMED units left on_hand when sold, and RESTOCKED ones (a cancelled order's) came back to
on_hand and count as neither held nor sold, so conservation reads initial on_hand = on_hand now + units
of CONFIRMED reservations.

The check is one SQL statement, so it reads one consistent snapshot without locking anything: every
step that changes ``reserved`` changes the reservations in the same transaction. The repair re-audits
the drifted rows inside one transaction after locking them in (sku, warehouse_id) order, the lock order
every reservation step follows, so it neither races nor deadlocks with live checkouts. It only ever sets
``reserved``; a row whose active reservations exceed on_hand is an oversell, reported and left to an
operator, because on_hand is a physical count.
"""

from __future__ import annotations

from collections.abc import Sequence

from warehouse.biz.events import STOCK_RECONCILED, reconciled_payload
from warehouse.biz.ports import UnitOfWork
from warehouse.model.reconciliation import ReconcileReport, with_problems

__all__ = ["RECONCILE_AGGREGATE", "ReconcileStock"]

RECONCILE_AGGREGATE = "stock-reconciliation"


class ReconcileStock:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, *, repair: bool = False, skus: Sequence[str] | None = None) -> ReconcileReport:
        """Audit every stock row (or those of ``skus``); with ``repair``, fix the repairable drift.

        A repair commits the corrected rows and one StockReconciled event together; the report then lists
        the findings as re-audited under the locks.
        """
        async with self._uow.read() as reads:
            checked, findings = await reads.audit_stock(sorted(set(skus)) if skus is not None else None)
        if not repair or not findings:
            return ReconcileReport(checked, tuple(findings))
        async with self._uow.transaction() as tx:
            current = with_problems(await tx.lock_and_audit([(f.sku, f.warehouse_id) for f in findings]))
            repaired = await tx.set_reserved([a for a in current if a.drift and a.repairable])
            if repaired:
                await tx.add_event(STOCK_RECONCILED, RECONCILE_AGGREGATE, reconciled_payload(repaired))
        return ReconcileReport(checked, tuple(current), tuple(repaired))
