"""Reconciliation in the service, audit only: stock drift as gauges, so an alert finds it before an operator must.

``kassa stock check`` (warehouse.reconcile) audits and repairs on demand; this loop runs the same audit — one
read-only statement over one snapshot, no locks (warehouse.biz.reconcile_stock) — every
``KASSA_WAREHOUSE_RECONCILE_SECONDS`` (300 by default; 0: never) and repairs nothing. Several replicas each
audit; the gauges of any of them tell the truth of the one database.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter, Gauge

from infra.worker import every
from warehouse.biz.reconcile_stock import ReconcileStock
from warehouse.model.reconciliation import Problem, ReconcileReport

__all__ = ["RECONCILE_RUNS", "STOCK_DRIFT_ROWS", "STOCK_DRIFT_UNITS", "DriftAudit"]

log = logging.getLogger("kassa.warehouse.drift")

STOCK_DRIFT_ROWS = Gauge(
    "kassa_warehouse_stock_drift_rows",
    "Stock rows the last reconciliation found wrong, by problem (reserved_drift, oversold, negative_on_hand, …)",
    ["problem"],
)
STOCK_DRIFT_UNITS = Gauge(
    "kassa_warehouse_stock_drift_units",
    "Units by which stock.reserved differs from its active reservations, summed over rows (absolute)",
)
RECONCILE_CHECKED = Gauge("kassa_warehouse_reconcile_checked_rows", "Stock rows the last reconciliation audited")
RECONCILE_LAST = Gauge(
    "kassa_warehouse_reconcile_last_run_timestamp_seconds", "When the last reconciliation finished (Unix time)"
)
RECONCILE_RUNS = Counter("kassa_warehouse_reconcile_runs", "Reconciliation audits run, by result", ["result"])


def record(report: ReconcileReport) -> None:
    """Set the gauges from one audit's report."""
    for problem in Problem:
        STOCK_DRIFT_ROWS.labels(problem.value).set(sum(problem in f.problems for f in report.findings))
    STOCK_DRIFT_UNITS.set(sum(abs(f.drift) for f in report.findings))
    RECONCILE_CHECKED.set(report.checked)
    RECONCILE_LAST.set(time.time())
    RECONCILE_RUNS.labels(report.status.value).inc()


class DriftAudit:
    def __init__(self, reconcile: ReconcileStock, interval_seconds: float) -> None:
        self._reconcile = reconcile
        self._interval = interval_seconds

    async def audit_once(self) -> ReconcileReport:
        report = await self._reconcile()
        record(report)
        if report.findings:
            found = len(report.findings)
            log.warning("reconciliation found %d stock row(s) with problems; see `kassa stock check`", found)
        return report

    async def _one_pass(self) -> bool:
        try:
            await self.audit_once()
        except Exception:
            RECONCILE_RUNS.labels("error").inc()
            raise
        return False  # always wait: one audit per interval

    async def run(self) -> None:
        if self._interval <= 0:
            return
        await every("stock reconciliation audit", self._interval, self._one_pass)()
