"""kassa.warehouse.v1.InventoryService: validate, convert, call biz. Nothing else."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc

from infra.auth import require_admin, require_privileged, require_service
from kassa.warehouse.v1 import inventory_service_pb2 as pb
from kassa.warehouse.v1 import inventory_service_pb2_grpc as pb_grpc
from warehouse.biz.check_stock import CheckStock
from warehouse.biz.confirm_reservations import ConfirmReservations
from warehouse.biz.extend_reservations import ExtendReservations
from warehouse.biz.get_reservations import GetReservations
from warehouse.biz.list_warehouses import ListWarehouses
from warehouse.biz.release_reservations import ReleaseReservations
from warehouse.biz.reserve_stock import ReserveCommand, ReserveStock
from warehouse.biz.set_stock import SetStock
from warehouse.biz.upsert_warehouses import UpsertWarehouses
from warehouse.service import validation
from warehouse.service.convert import earliest_expiry, level_to_pb, reservation_to_pb, warehouse_to_pb

__all__ = ["InventoryServiceServicer", "InventoryUseCases"]

log = logging.getLogger("kassa.warehouse")


@dataclass(frozen=True)
class InventoryUseCases:
    check_stock: CheckStock
    reserve_stock: ReserveStock
    get_reservations: GetReservations
    extend_reservations: ExtendReservations
    release_reservations: ReleaseReservations
    confirm_reservations: ConfirmReservations
    set_stock: SetStock
    list_warehouses: ListWarehouses
    upsert_warehouses: UpsertWarehouses


class InventoryServiceServicer(pb_grpc.InventoryServiceServicer):
    """Admin RPCs (SetStock, UpsertWarehouses) take an admin token, reservation changes a service token;
    the reads (CheckStock, BatchGetReservations, ListWarehouses) either."""

    def __init__(self, use_cases: InventoryUseCases, default_ttl_seconds: int) -> None:
        self._use = use_cases
        self._default_ttl = default_ttl_seconds

    async def CheckStock(
        self, request: pb.CheckStockRequest, context: grpc.aio.ServicerContext
    ) -> pb.CheckStockResponse:
        require_privileged()
        skus = validation.skus(list(request.items))
        levels = await self._use.check_stock(skus)
        return pb.CheckStockResponse(levels=[level_to_pb(level) for level in levels])

    async def ReserveStock(
        self, request: pb.ReserveStockRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReserveStockResponse:
        require_service()
        cmd = ReserveCommand(
            reservation_ref=validation.reference(request.reservation_ref),
            lines=validation.reserve_lines(list(request.lines)),
            ship_to_country=validation.ship_to_country(request.ship_to_country_code),
            ttl_seconds=validation.ttl_seconds(request.ttl, request.HasField("ttl"), self._default_ttl),
        )
        reservations = await self._use.reserve_stock(cmd)
        return pb.ReserveStockResponse(
            reservations=[reservation_to_pb(r) for r in reservations], expires_at=earliest_expiry(reservations)
        )

    async def BatchGetReservations(
        self, request: pb.BatchGetReservationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchGetReservationsResponse:
        require_privileged()
        ref = validation.reference(request.reservation_ref)
        reservations = await self._use.get_reservations(ref)
        return pb.BatchGetReservationsResponse(reservations=[reservation_to_pb(r) for r in reservations])

    async def ExtendReservations(
        self, request: pb.ExtendReservationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExtendReservationsResponse:
        require_service()
        ref = validation.reference(request.reservation_ref)
        ttl = validation.ttl_seconds(request.ttl, request.HasField("ttl"), self._default_ttl)
        reservations = await self._use.extend_reservations(ref, ttl)
        return pb.ExtendReservationsResponse(
            reservations=[reservation_to_pb(r) for r in reservations], expires_at=earliest_expiry(reservations)
        )

    async def ReleaseReservations(
        self, request: pb.ReleaseReservationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReleaseReservationsResponse:
        require_service()
        ref = validation.reference(request.reservation_ref)
        reason = validation.reason(request.reason)
        reservations = await self._use.release_reservations(ref)
        log.info("released reservations of %s (%s)", ref, reason or "no reason given")
        return pb.ReleaseReservationsResponse(reservations=[reservation_to_pb(r) for r in reservations])

    async def ConfirmReservations(
        self, request: pb.ConfirmReservationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConfirmReservationsResponse:
        require_service()
        ref = validation.reference(request.reservation_ref)
        reservations = await self._use.confirm_reservations(ref)
        return pb.ConfirmReservationsResponse(reservations=[reservation_to_pb(r) for r in reservations])

    async def SetStock(self, request: pb.SetStockRequest, context: grpc.aio.ServicerContext) -> pb.SetStockResponse:
        require_admin()
        settings = validation.stock_settings(list(request.items))
        levels = await self._use.set_stock(settings)
        return pb.SetStockResponse(levels=[level_to_pb(level) for level in levels])

    async def ListWarehouses(
        self, request: pb.ListWarehousesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWarehousesResponse:
        require_privileged()
        found = await self._use.list_warehouses()
        return pb.ListWarehousesResponse(warehouses=[warehouse_to_pb(w) for w in found])

    async def UpsertWarehouses(
        self, request: pb.UpsertWarehousesRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertWarehousesResponse:
        require_admin()
        items = validation.warehouses(list(request.warehouses))
        saved = await self._use.upsert_warehouses(items)
        return pb.UpsertWarehousesResponse(warehouses=[warehouse_to_pb(w) for w in saved])
