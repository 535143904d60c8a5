"""kassa.warehouse.v1.StockAdminService: the reconciliation report (dry run) and its repair, for admins.

A thin servicer over warehouse.biz.reconcile_stock.ReconcileStock (the same use case
``python -m warehouse.reconcile`` runs).
"""

from __future__ import annotations

import grpc

from infra.auth import require_admin
from kassa.warehouse.v1 import stock_admin_service_pb2 as pb
from kassa.warehouse.v1 import stock_admin_service_pb2_grpc as pb_grpc
from warehouse.biz.reconcile_stock import ReconcileStock
from warehouse.model.reconciliation import ReconcileReport, ReconcileStatus, StockAudit
from warehouse.service import validation

__all__ = ["READS", "StockAdminServiceServicer"]

READS = ("GetStockDrift",)

_STATUS = {
    ReconcileStatus.OVERSOLD: pb.DRIFT_STATUS_OVERSOLD,
    ReconcileStatus.DRIFT: pb.DRIFT_STATUS_DRIFT,
    ReconcileStatus.REPAIRED: pb.DRIFT_STATUS_REPAIRED,
    ReconcileStatus.CLEAN: pb.DRIFT_STATUS_CLEAN,
}


def _drift(a: StockAudit) -> pb.StockDrift:
    return pb.StockDrift(
        sku=a.sku,
        warehouse_id=a.warehouse_id,
        on_hand=a.on_hand,
        reserved=a.reserved,
        active_reserved=a.active_reserved,
        drift=a.drift,
        problems=[p.value for p in a.problems],
        repairable=a.repairable,
    )


def _report(report: ReconcileReport) -> tuple[int, int, list[pb.StockDrift]]:
    return _STATUS[report.status], report.checked, [_drift(f) for f in report.findings]


class StockAdminServiceServicer(pb_grpc.StockAdminServiceServicer):
    def __init__(self, reconcile: ReconcileStock) -> None:
        self._reconcile = reconcile

    async def GetStockDrift(
        self, request: pb.GetStockDriftRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetStockDriftResponse:
        require_admin()
        status, checked, findings = _report(await self._reconcile(skus=validation.drift_skus(list(request.skus))))
        return pb.GetStockDriftResponse(status=status, checked=checked, findings=findings)  # type: ignore[arg-type]

    async def RepairStockDrift(
        self, request: pb.RepairStockDriftRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepairStockDriftResponse:
        require_admin()
        report = await self._reconcile(repair=True, skus=validation.drift_skus(list(request.skus)))
        status, checked, findings = _report(report)
        return pb.RepairStockDriftResponse(
            status=status,  # type: ignore[arg-type]
            checked=checked,
            findings=findings,
            repaired=[_drift(a) for a in report.repaired],
        )
